"""The account table through the broker: several accounts, the default account rules (a
chosen default sticks; else the latest sign-in; else the only account), removal, and the store
document's version 1 migration into the record store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from authbroker import broker1
from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.store import Store
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import (
    CLIENT_ID,
    CP1,
    SECOND,
    USER,
    accounts,
    ctx,
    interactive,
    make_core,
    person,
    silent,
    two_sign_ins,
    xms_cc,
)


def test_several_accounts_default_and_remove(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        first, second = await two_sign_ins(core)
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


def test_a_store_of_the_single_cache_format_is_migrated(authority, tmp_path: Path) -> None:
    path = tmp_path / "store.enc"

    async def sign_in_with_the_old_format() -> broker1.TokenResult:
        core = make_core(authority.authority, None, person())
        token = await interactive(core)
        # what the daemon wrote before CAE had its own cache: one msal cache, version 1
        assert token.account
        whole = core.engine.partition(token.account.home_account_id).serialize()
        old = {"core": 1, "msalCache": whole,
               "accounts": core.accounts.entries(), "defaultAccount": None}
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
        # converted once into the record store, the old file kept aside
        assert [p.name.split("-")[0] for p in tmp_path.glob("store.enc.migrated-*")] == [
            "store.enc.migrated"]
        store = AccountStore(path, use_secret_service=False)
        loaded = store.open()
        assert store.legacy is None and loaded.meta["core"] == 3
        assert token.account and list(loaded.accounts) == [token.account.home_account_id]
        tokens = store.read_tokens(token.account.home_account_id)
        assert tokens is not None and set(tokens) == {"plain", "CP1"}
        store.close()

    asyncio.run(upgraded(asyncio.run(sign_in_with_the_old_format())))
