"""The broker's orchestration (dispatch, silent and interactive calls, the hot memo,
single-flight, persistence), driven directly (no bus) against the real local authority, real
msal, the real encrypted store and the scripted user agent playing the person."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import msal
import pytest

from authbroker import broker1
from authbroker.errors import BrokerStatusError
from fixtures.authority import start_authority
from fixtures.broker_core import (
    SCOPE,
    USER,
    CountingSession,
    SlowTokenEndpoint,
    accounts,
    ctx,
    interactive,
    make_core,
    person,
    silent,
)


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


def test_no_account_means_interaction_required(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None)
        with pytest.raises(BrokerStatusError) as err:
            await silent(core)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert await accounts(core) == []
        await core.aclose()

    asyncio.run(scenario())


def test_unsupported_methods_and_version(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None)
        version = await core.handle(
            broker1.Method.GET_LINUX_BROKER_VERSION, broker1.OpaqueRequest({}), ctx()
        )
        assert isinstance(version, broker1.VersionResult) and version.version
        # acquirePrtSsoCookie without a registered device (with one: test_prt_core.py)
        with pytest.raises(BrokerStatusError) as err:
            await core.handle(broker1.Method.ACQUIRE_PRT_SSO_COOKIE,
                              broker1.PrtSsoCookieRequest(), ctx())
        assert err.value.status == broker1.Status.DEVICE_NOT_REGISTERED
        assert set(broker1.error_object(err.value)) >= {"status", "errorCode", "tag", "context"}
        # every method has a route now (generateSignedHttpRequest: test_pop_core.py); one
        # without would be "not supported yet"
        del core._routes[broker1.Method.ACQUIRE_PRT_SSO_COOKIE]
        with pytest.raises(BrokerStatusError) as err:
            await core.handle(broker1.Method.ACQUIRE_PRT_SSO_COOKIE,
                              broker1.PrtSsoCookieRequest(), ctx())
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
        assert token.account
        rts = [rt["secret"] for rt in core.engine.partition(token.account.home_account_id).search(
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
