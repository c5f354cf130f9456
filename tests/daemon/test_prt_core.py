"""The device's PRT in the broker core (no bus), against the real local authority, real msal and
the real encrypted store: after registration a non-family client gets a silent token from one
exchange (``deviceid`` in it) and the next call is a cache hit; the PRT survives a restart, is
renewed when old (saved before use), dropped by removeAccount; a disabled device gives today's
answer, typed, and the device marked; acquirePrtSsoCookie in both forms."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jwt
import pytest

from authbroker import broker1, devicecrypto, shr
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.partitions import PRT
from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.prt import PrtState
from authbroker.errors import BrokerStatusError
from daemon.test_device_core import admin_act, register
from daemon.test_pop_core import POP, bound_kid, verified_shr
from fixtures.broker_core import USER, ctx, make_core, person, silent

#: Not a family client: without the PRT it needs a sign-in of its own.
APP = "7d2f1e0c-5b4a-4c3d-9e8f-0a1b2c3d4e5f"
OTHER_APP = "3c5e7a9b-1d2f-4a6c-8e0b-9f8e7d6c5b4a"
SCOPE = "https://storage.azure.com/.default"


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def account_of(core: BrokerCore) -> broker1.Account:
    identity = core.devices.identity
    assert identity is not None
    return core.accounts.account(identity.home_account_id)


def saved_prt(path: Path, hid: str) -> PrtState | None:
    store = AccountStore(path, use_secret_service=False)
    try:
        store.open()
        tokens = store.read_tokens(hid) or {}
    finally:
        store.close()
    return PrtState.from_record(tokens[PRT]) if PRT in tokens else None


async def cookie(core: BrokerCore, **kwargs: Any) -> broker1.PrtSsoCookieResult:
    result = await core.handle(broker1.Method.ACQUIRE_PRT_SSO_COOKIE,
                               broker1.PrtSsoCookieRequest(**kwargs), ctx())
    assert isinstance(result, broker1.PrtSsoCookieResult)
    return result


def test_any_client_served_from_the_prt_across_a_restart(authority, tmp_path) -> None:
    path = tmp_path / "store.enc"

    async def first() -> tuple[str, str]:
        core = make_core(authority.authority, path, person(USER))
        device = await register(core)
        assert device.prt == "active"
        account = account_of(core)
        with pytest.raises(BrokerStatusError) as err:  # another directory: not the PRT's
            await silent(core, client_id=APP, account=account,
                         authority="https://127.0.0.1/consumers")
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert core.prt.exchanges == 0
        token = await silent(core, client_id=APP, account=account)
        assert claims(token.access_token)["deviceid"] == device.device_id
        assert claims(token.access_token)["appid" if "appid" in claims(token.access_token)
                                          else "azp"] == APP
        posts = core.prt.client.posts
        again = await silent(core, client_id=APP, account=account)
        assert again.access_token == token.access_token
        assert core.prt.exchanges == 1 and core.prt.client.posts == posts  # a cache hit
        core.silent.hot.forget_account(account.home_account_id)  # msal's cache, not the memo
        assert (await silent(core, client_id=APP, account=account)).access_token \
            == token.access_token
        assert core.prt.exchanges == 1
        state = core.prt.state(account.home_account_id)
        assert state["prt"] == "active" and state["expiresOn"] > state["renewedAt"]
        await core.aclose()
        return account.home_account_id, device.device_id

    hid, device_id = asyncio.run(first())
    saved = saved_prt(path, hid)
    assert saved is not None and saved.device_id == device_id

    async def after_restart() -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: must not be needed
        await core.start()
        account = account_of(core)
        token = await silent(core, client_id=OTHER_APP, account=account)
        assert claims(token.access_token)["deviceid"] == device_id
        assert core.prt.exchanges == 1
        await core.handle(broker1.Method.REMOVE_ACCOUNT,
                          broker1.RemoveAccountRequest(account, OTHER_APP), ctx())
        assert core.prt.state(hid)["prt"] == "none"
        await core.aclose()

    asyncio.run(after_restart())
    assert saved_prt(path, hid) is None  # removeAccount dropped it with the tokens


def test_renewal_when_old_is_saved_before_use(authority, tmp_path) -> None:
    path = tmp_path / "store.enc"

    async def run() -> None:
        core = make_core(authority.authority, path, person(USER))
        await register(core)
        account = account_of(core)
        hid = account.home_account_id
        before = saved_prt(path, hid)
        assert before is not None
        core.prt.renew_after_s = 0.0  # every use finds it old
        await silent(core, client_id=APP, account=account)
        after = saved_prt(path, hid)
        assert after is not None and after.prt != before.prt
        assert after.session_key == before.session_key and after.renewed_at >= before.renewed_at
        assert core.prt.state(hid)["renewedAt"] == after.renewed_at
        core.prt.renew_after_s = 4 * 3600.0
        await silent(core, client_id=OTHER_APP, account=account)  # the renewed PRT serves
        assert saved_prt(path, hid).prt == after.prt  # type: ignore[union-attr]
        assert core.prt.exchanges == 2
        await core.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(("action", "code", "marked", "prt"), [
    ("disable", 135011, "disabled", "refused"),
    ("delete", 70008, "registered", "expired"),  # its PRTs went with it: an unknown PRT
])
def test_refused_device_gives_todays_answer_typed_and_marks_it(
        authority, tmp_path, action: str, code: int, marked: str, prt: str) -> None:
    async def run() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person(USER))
        device = await register(core)
        account = account_of(core)
        admin_act(authority, device.device_id, action)
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, client_id=APP, account=account)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert err.value.error_code == code and f"AADSTS{code}" in err.value.context
        identity = core.devices.identity
        assert identity is not None and identity.state == marked
        assert saved_prt(tmp_path / "store.enc", account.home_account_id) is None
        assert core.prt.state(account.home_account_id)["prt"] == prt
        with pytest.raises(BrokerStatusError) as err:  # no second try at the authority
            await silent(core, client_id=OTHER_APP, account=account)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert err.value.error_code == 0
        with pytest.raises(BrokerStatusError) as err:
            await cookie(core, account=account)
        assert err.value.status == broker1.Status.DEVICE_NOT_REGISTERED
        await core.aclose()

    asyncio.run(run())


def test_pop_request_served_from_the_prt_and_the_renewal_timer(authority, tmp_path) -> None:
    path = tmp_path / "store.enc"

    async def run() -> None:
        core = make_core(authority.authority, path, person(USER))
        await register(core)
        account = account_of(core)
        hid = account.home_account_id
        token = await silent(core, client_id=APP, account=account, pop_params=POP)
        assert token.access_token_type is broker1.AccessTokenType.POP
        payload = verified_shr(token.access_token)
        assert bound_kid(payload) == shr.thumbprint(payload["cnf"]["jwk"])
        identity = core.devices.identity
        assert identity is not None and claims(payload["at"])["deviceid"] == identity.device_id
        again = await silent(core, client_id=APP, account=account, pop_params=POP)
        assert verified_shr(again.access_token)["at"] == payload["at"]
        # kept apart: a bearer token from the refresh token the exchange left for the app
        bearer = await silent(core, client_id=APP, account=account)
        assert "cnf" not in claims(bearer.access_token)
        assert core.prt.exchanges == 1
        before = saved_prt(path, hid)
        assert before is not None
        core.prt._schedule(core.prt.kept.states[hid], 0.05)  # the timer, due now
        for _ in range(100):
            await asyncio.sleep(0.05)
            after = saved_prt(path, hid)
            if after is not None and after.prt != before.prt:
                break
        assert after is not None and after.prt != before.prt
        assert hid in core.prt._timers  # and the next one is set, at half its life
        await core.aclose()

    asyncio.run(run())


def test_sso_cookie_both_forms_and_the_sso_nonce(authority, tmp_path) -> None:
    async def run() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person(USER))
        with pytest.raises(BrokerStatusError) as err:  # nobody signed in, no device
            await cookie(core)
        assert err.value.status == broker1.Status.DEVICE_NOT_REGISTERED
        await register(core)
        account = account_of(core)
        url = f"{authority.authority}/{authority.tenant_id}/oauth2/authorize?client_id={APP}"
        challenged = await cookie(core, account=account, sso_url=f"{url}&sso_nonce=N0nce-42")
        wire = challenged.to_wire()
        assert wire["cookieName"] == "x-ms-RefreshTokenCredential"
        assert wire["cookieItems"] == [{"cookieName": wire["cookieName"],
                                        "cookieContent": wire["cookieContent"]}]
        assert wire["account"]["homeAccountId"] == account.home_account_id
        parsed = devicecrypto.read_session_jwt(challenged.cookie_content)
        assert parsed.claims["request_nonce"] == "N0nce-42"
        state = core.prt.kept.states[account.home_account_id]
        assert devicecrypto.verify_session_jwt(parsed, state.session_key)["refresh_token"] \
            == state.prt
        fresh = await cookie(core, sso_url=url)  # the default account; a fresh nonce
        nonce = devicecrypto.read_session_jwt(fresh.cookie_content).claims["request_nonce"]
        assert nonce and nonce != "N0nce-42"
        assert broker1.PrtSsoCookieResult.from_wire({"cookieItems": wire["cookieItems"]}) \
            .cookie_content == challenged.cookie_content
        assert challenged.cookie_content not in repr(challenged)
        await core.aclose()

    asyncio.run(run())
