"""The broker core directly (no bus) against the real local authority, real msal, the real
encrypted store and the scripted user agent playing the person."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests

from authbroker import broker1
from authbroker.config import Settings
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.handler import CallContext, DeviceCodePrompt
from authbroker.daemon.store import Store
from authbroker.devkit.useragent import device_login, sign_in
from authbroker.errors import BrokerStatusError
from fixtures.authority import start_authority
from fixtures.desktop_notifications import NotificationServer

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
OTHER_CLIENT_ID = "7f7a0f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
SCOPE = "https://storage.azure.com/.default"
PASSWORD = "Passw0rd!"
USER = "user@contoso.example"
SECOND = "second@contoso.example"
PERSONAL = "personal@outlook.example"
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


class CountingSession(requests.Session):
    """msal's HTTP client, counting token-endpoint POSTs (instrumentation, not a mock)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_posts = 0
        self._count_lock = threading.Lock()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if method.upper() == "POST" and url.endswith("/oauth2/v2.0/token"):
            with self._count_lock:
                self.token_posts += 1
        return super().request(method, url, *args, **kwargs)


def person(username: str = USER, password: str = PASSWORD) -> Callable[[str], bool]:
    """An ``open_url`` that plays the person: signs in at the URL, as a browser would."""

    def open_url(url: str) -> bool:
        sign_in(url, username, password)
        return True

    return open_url


def nobody(url: str) -> bool:
    """A browser that opens and is then ignored by the person."""
    return True


def auth(
    *,
    authority: str = "https://127.0.0.1/organizations",
    account: broker1.Account | None = None,
    client_id: str = CLIENT_ID,
    scopes: tuple[str, ...] = (SCOPE,),
    interactive: bool = False,
    **kwargs: Any,
) -> broker1.AuthParameters:
    return broker1.AuthParameters(
        client_id=client_id,
        requested_scopes=scopes,
        authority=authority,
        authorization_type=broker1.AuthorizationType.INTERACTIVE
        if interactive
        else broker1.AuthorizationType.CACHED_REFRESH_TOKEN,
        account=account,
        is_sign_in=account is None,
        **kwargs,
    )


def ctx(correlation_id: str = "corr-1", **kwargs: Any) -> CallContext:
    return CallContext(correlation_id=correlation_id, sender=":1.1", uid=0, **kwargs)


def make_core(
    authority_url: str, store_path: Path | None, open_url: Callable[[str], bool] = nobody,
    *, ui: str = "browser", timeout: float = 30, http_client: Any = None,
) -> BrokerCore:
    store = Store(store_path, use_secret_service=False) if store_path else None
    return BrokerCore(
        store,
        Settings(authority=authority_url, ui=ui, backend=None),
        sign_in_timeout=timeout,
        open_url=open_url,
        http_client=http_client,
    )


async def interactive(core: BrokerCore, **kwargs: Any) -> broker1.TokenResult:
    request = broker1.TokenRequest(auth(interactive=True, **kwargs), parent_window_handle=1)
    result = await core.handle(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, ctx())
    assert isinstance(result, broker1.TokenResult)
    return result


async def silent(core: BrokerCore, **kwargs: Any) -> broker1.TokenResult:
    request = broker1.TokenRequest(auth(**kwargs))
    result = await core.handle(broker1.Method.ACQUIRE_TOKEN_SILENTLY, request, ctx())
    assert isinstance(result, broker1.TokenResult)
    return result


async def accounts(core: BrokerCore) -> list[broker1.Account]:
    result = await core.handle(broker1.Method.GET_ACCOUNTS, broker1.GetAccountsRequest(CLIENT_ID),
                               ctx())
    assert isinstance(result, broker1.AccountsResult)
    return list(result.accounts)


def test_browser_sign_in_then_silent_and_accounts(authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person())
        # msal hands the broker the authority without its port: it must reach ours anyway.
        token = await interactive(core)
        assert token.account is not None and token.account.username == USER
        assert token.account.realm == authority.tenant_id
        assert token.account.environment == "127.0.0.1"
        home = f"{token.account.local_account_id}.{authority.tenant_id}"
        assert token.account.home_account_id == home
        assert broker1.decode_client_info(token.client_info) == tuple(
            token.account.home_account_id.split(".")
        )
        assert set(token.granted_scopes) >= {SCOPE}
        assert token.expires_on > time.time() + 600
        assert token.id_token.count(".") == 2

        listed = await accounts(core)
        assert [a.username for a in listed] == [USER]
        wire = listed[0].to_wire()
        for field in ("homeAccountId", "localAccountId", "realm", "username", "environment",
                      "name", "givenName", "familyName", "passwordExpiry", "clientInfo"):
            assert field in wire, field

        # default-account silent sign-in (account null + isSignIn) is served from the cache
        again = await silent(core)
        assert again.access_token == token.access_token
        assert again.account and again.account.username == USER
        # with the account echoed back, and with a tenant-specific authority
        same = await silent(
            core, account=listed[0], authority=f"https://127.0.0.1/{authority.tenant_id}"
        )
        assert same.account and same.account.home_account_id == listed[0].home_account_id
        forced = await silent(core, account=listed[0], force_refresh=True)
        assert forced.access_token != token.access_token
        await core.aclose()

    asyncio.run(scenario())


def test_restart_keeps_accounts_and_refresh_tokens(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def first() -> str:
        core = make_core(authority.authority, store, person())
        token = await interactive(core)
        await core.aclose()
        return token.access_token

    async def second(old: str) -> None:
        core = make_core(authority.authority, store)  # nobody to sign in: must not be needed
        listed = await accounts(core)
        assert [a.username for a in listed] == [USER]
        assert (await silent(core)).access_token == old
        refreshed = await silent(core, account=listed[0], force_refresh=True)
        assert refreshed.access_token != old
        await core.aclose()

    asyncio.run(second(asyncio.run(first())))


def test_expired_access_token_is_refreshed_once_for_concurrent_callers(tmp_path: Path,
                                                                       authority) -> None:
    # tokens living 60 s count as expired for msal (less than 5 minutes left): every silent
    # call needs a refresh, and eight identical concurrent calls must share one.
    with start_authority(tmp_path, "--token-lifetime", "60", ca_from=authority) as short:
        counter = CountingSession()

        async def scenario() -> None:
            core = make_core(short.authority, None, person(), http_client=counter)
            first = await interactive(core)
            before = counter.token_posts
            results = await asyncio.gather(*(silent(core) for _ in range(8)))
            assert counter.token_posts == before + 1
            assert len({r.access_token for r in results}) == 1
            assert results[0].access_token != first.access_token
            assert results[0].expires_on > time.time() + 30
            # a later call refreshes again (the token is still "expired" for msal)
            await silent(core)
            assert counter.token_posts == before + 2
            await core.aclose()

        asyncio.run(scenario())


def test_several_accounts_default_and_remove(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        first = await interactive(core)
        core._open_url = person(SECOND)
        second = await interactive(core)
        assert first.account and second.account
        names = [a.username for a in await accounts(core)]
        assert names == [SECOND, USER]  # the most recent sign-in is the default, listed first
        assert (await silent(core)).account.username == SECOND  # type: ignore[union-attr]
        await core.set_default_account(first.account.home_account_id)
        assert (await silent(core)).account.username == USER  # type: ignore[union-attr]

        await core.handle(
            broker1.Method.REMOVE_ACCOUNT,
            broker1.RemoveAccountRequest(first.account, CLIENT_ID),
            ctx(),
        )
        assert [a.username for a in await accounts(core)] == [SECOND]
        assert not core.engine.has_refresh_token(first.account.home_account_id)
        assert core.engine.has_refresh_token(second.account.home_account_id)
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, account=first.account)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        # the remaining account became the default
        assert (await silent(core)).account.username == SECOND  # type: ignore[union-attr]
        await core.aclose()

        restarted = make_core(authority.authority, store)
        assert [a.username for a in await accounts(restarted)] == [SECOND]
        assert not restarted.engine.has_refresh_token(first.account.home_account_id)
        await restarted.aclose()

    asyncio.run(scenario())


def test_a_chosen_default_outlives_later_sign_ins(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"
    choose = broker1.UiMethod.SET_DEFAULT_ACCOUNT

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        first = await interactive(core)
        await core.handle(choose, broker1.SetDefaultAccountRequest(username=USER), ctx())
        core._open_url = person(SECOND)
        second = await interactive(core)  # another app signs another person in
        assert first.account and second.account
        assert (await silent(core)).account.username == USER  # type: ignore[union-attr]
        default = await core.handle(broker1.UiMethod.GET_DEFAULT_ACCOUNT, broker1.OpaqueRequest(),
                                    ctx())
        assert isinstance(default, broker1.DefaultAccountResult)
        assert default.account and default.account.username == USER
        await core.aclose()

        restarted = make_core(authority.authority, store)
        assert (await silent(restarted)).account.username == USER  # type: ignore[union-attr]
        # signing the chosen one out hands the default to the latest sign-in
        await restarted.remove_account(first.account.home_account_id)
        assert (await silent(restarted)).account.username == SECOND  # type: ignore[union-attr]
        await restarted.aclose()

    asyncio.run(scenario())


def test_no_account_means_interaction_required(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None)
        with pytest.raises(BrokerStatusError) as err:
            await silent(core)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert await accounts(core) == []
        await core.aclose()

    asyncio.run(scenario())


def test_device_code_flow_reaches_the_caller_and_signs_in(authority) -> None:
    prompts: list[DeviceCodePrompt] = []

    async def announce(prompt: DeviceCodePrompt) -> None:
        prompts.append(prompt)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(
            None, device_login, prompt.verification_uri, prompt.user_code, SECOND, PASSWORD
        )

    async def scenario() -> None:
        core = make_core(authority.authority, None, ui="device-code")
        request = broker1.TokenRequest(auth(interactive=True), parent_window_handle=1)
        result = await core.handle(
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, ctx(announce_device_code=announce)
        )
        assert isinstance(result, broker1.TokenResult)
        assert result.account and result.account.username == SECOND
        assert len(prompts) == 1 and prompts[0].user_code in prompts[0].message
        assert prompts[0].verification_uri.startswith(authority.authority)
        await core.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["browser", "device-code"])
def test_cancel_interactive_flow_ends_sign_in_with_user_canceled(authority, mode: str) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, ui=mode)
        task = asyncio.ensure_future(interactive(core))
        await asyncio.sleep(1.0)
        assert not task.done()
        # another app's (late) cancel leaves this sign-in alone
        stranger = CallContext(correlation_id="late", sender=":1.99", uid=0)
        await core.handle(broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest(), stranger)
        await asyncio.sleep(0.3)
        assert not task.done()
        started = time.monotonic()
        reply = await core.handle(
            broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest("user closed it"),
            ctx("x"),
        )
        assert isinstance(reply, broker1.OkResult)
        with pytest.raises(BrokerStatusError) as err:
            await task
        assert err.value.status == broker1.Status.USER_CANCELED
        assert time.monotonic() - started < 2
        await core.aclose()

    asyncio.run(scenario())


def test_sign_in_times_out_with_an_error(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, timeout=1.5)
        started = time.monotonic()
        with pytest.raises(BrokerStatusError) as err:
            await interactive(core)
        assert time.monotonic() - started < 5
        assert err.value.status not in (7, 12, 23)
        assert "did not finish" in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_unreachable_authority_names_the_setting(authority) -> None:
    async def scenario() -> None:
        # no configured authority: msal's port-less authority goes to 127.0.0.1:443
        core = BrokerCore(None, Settings(authority=None, ui="browser", backend=None),
                          open_url=nobody)
        with pytest.raises(BrokerStatusError) as err:
            await interactive(core)
        assert err.value.status in (3, 5)  # NoNetwork / ServerTemporarilyUnavailable
        assert "AUTHBROKER_AUTHORITY" in err.value.context
        assert "https://127.0.0.1/organizations" in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_msa_passthrough_marker_reaches_the_authority(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person(PERSONAL))
        token = await interactive(
            core, extra_query={"msal_client_sku": "MSAL.Python",
                               "msal_request_type": "consumer_passthrough"},
        )
        assert token.account and token.account.username == PERSONAL
        assert token.account.realm == CONSUMER_TENANT
        # extra parameters must not split msal's cache: a silent call is served from it
        assert (await silent(core)).access_token == token.access_token
        await core.aclose()

    asyncio.run(scenario())


def test_claims_challenge_bypasses_cache_but_capabilities_do_not(authority) -> None:
    cp1 = '{"access_token":{"xms_cc":{"values":["CP1"]}}}'
    challenge = json.dumps({"access_token": {"nbf": {"essential": True,
                                                     "value": str(int(time.time()))}}})

    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        first = await interactive(core, decoded_claims=cp1)
        cached = await silent(core, decoded_claims=cp1)
        assert cached.access_token == first.access_token
        fresh = await silent(core, decoded_claims=challenge)
        assert fresh.access_token != first.access_token
        await core.aclose()

    asyncio.run(scenario())


CP1 = '{"access_token":{"xms_cc":{"values":["CP1"]}}}'


def xms_cc(token: broker1.TokenResult) -> list[str] | None:
    return jwt.decode(token.access_token, options={"verify_signature": False}).get("xms_cc")


def test_cae_and_plain_tokens_never_mix(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        plain = await interactive(core)
        assert xms_cc(plain) is None
        assert xms_cc(await silent(core)) is None
        # a CAE request after the plain token: a CP1 token, from the same sign-in's refresh token
        cae = await silent(core, decoded_claims=CP1)
        assert xms_cc(cae) == ["CP1"]
        assert cae.account and cae.account.username == USER
        # each kind is then served from its own cache (and the hot path) without mixing
        again = await silent(core)
        assert again.access_token == plain.access_token and xms_cc(again) is None
        cae_again = await silent(core, decoded_claims=CP1)
        assert cae_again.access_token == cae.access_token
        # refresh tokens rotate (and a replayed one revokes them all): each cache's refresh
        # passes the new one on, so both kinds keep refreshing, in any order
        for claims in ("", CP1, CP1, "", ""):
            forced = await silent(core, decoded_claims=claims, force_refresh=True)
            assert xms_cc(forced) == (["CP1"] if claims else None)
        plain = await silent(core)
        cae = await silent(core, decoded_claims=CP1)
        await core.aclose()

        restarted = make_core(authority.authority, store)  # nobody to sign in
        after_plain = await silent(restarted)
        after_cae = await silent(restarted, decoded_claims=CP1)
        assert after_plain.access_token == plain.access_token
        assert after_cae.access_token == cae.access_token
        assert xms_cc(await silent(restarted, decoded_claims=CP1, force_refresh=True)) == ["CP1"]
        assert xms_cc(await silent(restarted, force_refresh=True)) is None
        await restarted.aclose()

    asyncio.run(scenario())


def test_a_cae_sign_in_then_a_plain_request_gets_a_plain_token(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        cae = await interactive(core, decoded_claims=CP1)
        assert xms_cc(cae) == ["CP1"]
        plain = await silent(core)
        assert xms_cc(plain) is None
        assert xms_cc(await silent(core, decoded_claims=CP1)) == ["CP1"]
        # a new sign-in through the plain cache: the CAE cache refreshes with its refresh token
        await interactive(core, prompt="login")
        assert xms_cc(await silent(core, decoded_claims=CP1, force_refresh=True)) == ["CP1"]
        assert xms_cc(await silent(core, force_refresh=True)) is None
        # signing out forgets the account in both caches
        assert cae.account
        await core.remove_account(cae.account.home_account_id)
        for claims in ("", CP1):
            with pytest.raises(BrokerStatusError) as err:
                await silent(core, account=cae.account, decoded_claims=claims)
            assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        await core.aclose()

    asyncio.run(scenario())


def test_concurrent_plain_and_cae_refreshes_of_one_account(tmp_path: Path, authority) -> None:
    # 60 s tokens: every call refreshes. Refresh tokens rotate and a replayed one revokes the
    # sign-in, so one account's refreshes must take turns, whichever cache they are for.
    with start_authority(tmp_path, "--token-lifetime", "60", ca_from=authority) as short:

        async def scenario() -> None:
            core = make_core(short.authority, None, person(),
                             http_client=SlowTokenEndpoint(0.2))
            await interactive(core)
            for _ in range(2):
                results = await asyncio.gather(
                    silent(core), silent(core, decoded_claims=CP1),
                    silent(core, scopes=("https://management.azure.com/.default",)),
                )
                assert [xms_cc(r) for r in results] == [None, ["CP1"], None]
            await core.aclose()

        asyncio.run(scenario())


def test_a_store_of_the_single_cache_format_is_migrated(authority, tmp_path: Path) -> None:
    path = tmp_path / "store.enc"

    async def sign_in_with_the_old_format() -> broker1.TokenResult:
        core = make_core(authority.authority, None, person())
        token = await interactive(core)
        # what the daemon wrote before CAE had its own cache: one msal cache, version 1
        old = {"core": 1, "msalCache": core.engine.cache.serialize(),
               "accounts": list(core._accounts.values()), "defaultAccount": None}
        Store(path, use_secret_service=False).save(old)
        await core.aclose()
        return token

    async def upgraded(token: broker1.TokenResult) -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: must not be needed
        assert [a.username for a in await accounts(core)] == [USER]
        plain = await silent(core)
        # the old cache's access tokens are dropped (CAE or not, nobody can tell): refreshed
        assert plain.access_token != token.access_token and xms_cc(plain) is None
        assert xms_cc(await silent(core, decoded_claims=CP1)) == ["CP1"]
        await core.aclose()
        doc = Store(path, use_secret_service=False).load()
        assert doc["core"] == 2 and "msalCache" not in doc
        assert set(doc["msalCaches"]) == {"plain", "CP1"}

    asyncio.run(upgraded(asyncio.run(sign_in_with_the_old_format())))


def test_revoked_refresh_token_asks_for_interaction(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        token = await interactive(core)
        cache = core.engine.cache  # as if the authority had revoked the refresh token
        for rt in list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)):
            cache.update_rt(rt, "not-a-refresh-token")
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, account=token.account, force_refresh=True)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert err.value.error_code > 0  # the AADSTS number
        assert "not-a-refresh-token" not in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_unsupported_methods_and_version(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None)
        version = await core.handle(
            broker1.Method.GET_LINUX_BROKER_VERSION, broker1.OpaqueRequest({}), ctx()
        )
        assert isinstance(version, broker1.VersionResult) and version.version
        for method in (broker1.Method.ACQUIRE_PRT_SSO_COOKIE,
                       broker1.Method.GENERATE_SIGNED_HTTP_REQUEST):
            with pytest.raises(BrokerStatusError) as err:
                await core.handle(method, broker1.OpaqueRequest({}), ctx())
            assert err.value.status == broker1.Status.UNEXPECTED
            assert "not supported yet" in err.value.context
            assert set(broker1.error_object(err.value)) >= {"status", "errorCode", "tag", "context"}
        await core.aclose()

    asyncio.run(scenario())


def test_no_secret_in_logs_or_store_bytes(authority, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "store.enc"

    async def scenario() -> tuple[broker1.TokenResult, list[str]]:
        core = make_core(authority.authority, store, person())
        token = await interactive(core)
        await silent(core, force_refresh=True)
        rts = [rt["secret"] for rt in core.engine.cache.search(
            msal.TokenCache.CredentialType.REFRESH_TOKEN)]
        await core.aclose()
        return token, rts

    token, rts = asyncio.run(scenario())
    secrets = [token.access_token, token.id_token, *rts]
    assert rts
    data = store.read_bytes()
    logs = caplog.text
    for secret in secrets:
        assert secret.encode() not in data
        assert secret[-24:] not in logs
    assert USER.encode() not in data  # the whole document is encrypted


def test_without_a_browser_the_device_code_prompt_reaches_caller_and_desktop(
    authority, dbus_session, monkeypatch
) -> None:
    for var in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    prompts: list[DeviceCodePrompt] = []

    async def announce(prompt: DeviceCodePrompt) -> None:
        prompts.append(prompt)
        asyncio.get_running_loop().run_in_executor(
            None, device_login, prompt.verification_uri, prompt.user_code, USER, PASSWORD
        )

    async def scenario() -> None:
        core = BrokerCore(None, Settings(authority=authority.authority, ui=None, backend=None),
                          open_url=person())  # never used: no browser can open
        request = broker1.TokenRequest(auth(interactive=True), parent_window_handle=1)
        result = await core.handle(
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, ctx(announce_device_code=announce)
        )
        assert isinstance(result, broker1.TokenResult)
        assert result.account and result.account.username == USER
        await core.aclose()

    with NotificationServer(dbus_session.address) as notifications:
        asyncio.run(scenario())
    assert len(prompts) == 1
    [(summary, body)] = notifications.shown
    assert summary == "Sign-in required"
    assert prompts[0].user_code in body


def test_hint_prompt_claims_and_passthrough_travel_to_the_authority(authority) -> None:
    from urllib.parse import parse_qs, urlsplit

    seen: list[str] = []
    personal = person(PERSONAL)

    def open_url(url: str) -> bool:
        seen.append(url)
        return personal(url)

    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})

    async def scenario() -> broker1.TokenResult:
        core = make_core(authority.authority, None, open_url)
        token = await interactive(
            core, username=PERSONAL, prompt="login", decoded_claims=challenge,
            extra_query={"msal_client_sku": "MSAL.Python",
                         "msal_request_type": "consumer_passthrough"},
        )
        await core.aclose()
        return token

    token = asyncio.run(scenario())
    assert token.account and token.account.username == PERSONAL
    query = parse_qs(urlsplit(seen[0]).query)
    assert query["login_hint"] == [PERSONAL]
    assert query["prompt"] == ["login"]
    assert json.loads(query["claims"][0]) == json.loads(challenge)
    assert query["msal_request_type"] == ["consumer_passthrough"]
    assert query["response_mode"] == ["form_post"]
    assert "msal_client_sku" not in query  # client telemetry stays with the client


def test_authority_that_went_away_is_named_with_the_setting(tmp_path: Path, authority) -> None:
    async def sign_in_then(core: BrokerCore, stop: Callable[[], None]) -> BrokerStatusError:
        await interactive(core)
        stop()
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, force_refresh=True)
        return err.value

    with start_authority(tmp_path, ca_from=authority) as gone:
        core = make_core(gone.authority, None, person())
        error = asyncio.run(sign_in_then(core, lambda: (gone.process.terminate(),
                                                         gone.process.wait(10))))
    assert error.status == broker1.Status.NO_NETWORK
    assert "AUTHBROKER_AUTHORITY" in error.context
    assert gone.authority in error.context
    asyncio.run(core.aclose())


def test_a_failed_save_does_not_fail_the_call_and_is_retried(authority, tmp_path: Path,
                                                              caplog) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the store's directory should be")
    store = blocker / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        token = await interactive(core)  # the save fails: the sign-in still succeeds
        assert token.account and token.account.username == USER
        assert "could not save the broker store" in caplog.text
        blocker.unlink()
        blocker.mkdir()
        await silent(core)  # served from memory, and the pending save happens now
        assert store.exists()
        await core.aclose()
        restarted = make_core(authority.authority, store)
        assert [a.username for a in await accounts(restarted)] == [USER]
        await restarted.aclose()

    asyncio.run(scenario())


class SlowTokenEndpoint(requests.Session):
    """msal's HTTP client on a slow network: token requests take ``delay`` seconds longer."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        if method.upper() == "POST" and url.endswith("/oauth2/v2.0/token"):
            time.sleep(self.delay)
        return response


def test_remove_account_during_a_refresh_stays_removed(tmp_path: Path, authority) -> None:
    with start_authority(tmp_path, "--token-lifetime", "60", ca_from=authority) as short:

        async def scenario() -> None:
            core = make_core(short.authority, tmp_path / "store.enc", person(),
                             http_client=SlowTokenEndpoint(0.5))
            token = await interactive(core)
            assert token.account
            hid = token.account.home_account_id
            refreshing = asyncio.ensure_future(silent(core))  # 60 s tokens: needs a refresh
            await asyncio.sleep(0.2)  # the refresh is on the wire
            await core.remove_account(hid)
            with pytest.raises(BrokerStatusError) as err:
                await refreshing
            assert err.value.status == broker1.Status.INTERACTION_REQUIRED
            assert await accounts(core) == []
            assert not core.engine.has_refresh_token(hid)
            await core.aclose()

        asyncio.run(scenario())


@pytest.mark.parametrize(
    ("requested", "configured", "expected", "discovery"),
    [
        # msal strips the port: the configured authority's host without a port goes there
        ("https://127.0.0.1/organizations", "https://127.0.0.1:8443",
         "https://127.0.0.1:8443/organizations", False),
        ("https://127.0.0.1/8eaef023-2b34-4da1-9baa-8bc8c9d6a490", "https://127.0.0.1:8443",
         "https://127.0.0.1:8443/8eaef023-2b34-4da1-9baa-8bc8c9d6a490", False),
        ("", "https://127.0.0.1:8443", "https://127.0.0.1:8443/organizations", False),
        ("https://127.0.0.1", "https://127.0.0.1:8443/common", "https://127.0.0.1:8443/common",
         False),
        # anything else goes as given; discovery only for Microsoft's hosts
        ("https://127.0.0.1:9000/common", "https://127.0.0.1:8443",
         "https://127.0.0.1:9000/common", False),
        ("https://login.microsoftonline.com/common", "https://127.0.0.1:8443",
         "https://login.microsoftonline.com/common", True),
        ("", None, "https://login.microsoftonline.com/organizations", True),
        ("https://idp.example/t1", None, "https://idp.example/t1", False),
    ],
)
def test_where_requests_go(requested: str, configured: str | None, expected: str,
                           discovery: bool) -> None:
    from authbroker.daemon.msal_engine import resolve_authority

    target = resolve_authority(requested, configured)
    assert (target.authority, target.instance_discovery) == (expected, discovery)


def test_claims_split_into_capabilities_and_challenge() -> None:
    from authbroker.daemon.msal_engine import split_claims

    cp1 = {"access_token": {"xms_cc": {"values": ["CP1"]}}}
    assert split_claims(json.dumps(cp1)).capabilities == ("CP1",)
    assert split_claims(json.dumps(cp1)).challenge is None
    both = {"access_token": {"xms_cc": {"values": ["CP1"]}, "nbf": {"essential": True}}}
    split = split_claims(json.dumps(both))
    assert split.capabilities == ("CP1",)
    assert json.loads(split.challenge or "") == {"access_token": {"nbf": {"essential": True}}}
    assert split_claims("") == split_claims("  ")
    with pytest.raises(BrokerStatusError) as err:
        split_claims("{not json")
    assert err.value.status == broker1.Status.API_CONTRACT_VIOLATION
