"""Per-account partitions through the broker: one account's tokens apart from another's, a
family refresh token found in its account's partition (FOCI), partitions read on first use,
removal touching one account, and a version 2 single-file store split by account."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msal

from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.store import Store
from fixtures.broker_core import (
    CLIENT_ID,
    SECOND,
    USER,
    accounts,
    interactive,
    make_core,
    person,
    silent,
)

EDGE = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"  # a family member, like the Azure CLI
_KINDS = ("RefreshToken", "AccessToken", "IdToken", "Account")


def _hids_in(state: str) -> set[str]:
    cache = json.loads(state)
    return {e["home_account_id"] for kind in _KINDS for e in cache.get(kind, {}).values()}


def test_accounts_have_their_own_partitions_and_removal_touches_one(authority,
                                                                   tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        first = await interactive(core)
        core._open_url = person(SECOND)
        second = await interactive(core)
        assert first.account and second.account
        a, b = first.account.home_account_id, second.account.home_account_id
        assert _hids_in(core.engine.partition(a).serialize()) == {a}
        assert _hids_in(core.engine.partition(b).serialize()) == {b}
        assert core.store is not None
        committed: list[list[str]] = []
        commit = core.store.commit

        def spy(changes, *args, **kwargs):  # type: ignore[no-untyped-def]
            changes = list(changes)
            committed.append([c.hid for c in changes])
            return commit(changes, *args, **kwargs)

        core.store.commit = spy  # type: ignore[method-assign]
        await silent(core, account=first.account, force_refresh=True)
        assert committed == [[a]]  # one transaction, the refreshed account's row only
        kept = core.engine.partition(b).serialize()
        await core.remove_account(a)
        assert committed[-1] == [a]
        assert core.engine.partition(b).serialize() == kept  # untouched
        assert (await silent(core, account=second.account)).access_token == second.access_token
        assert len(committed) == 2  # a cached token changes nothing: nothing is written
        await core.aclose()

        restarted = make_core(authority.authority, store)
        assert [x.home_account_id for x in await accounts(restarted)] == [b]
        assert restarted.engine.loaded_accounts == 0  # partitions are read on first use
        await silent(restarted, force_refresh=True)
        assert restarted.engine.loaded_accounts == 1
        await restarted.aclose()

    asyncio.run(scenario())


def test_a_family_refresh_token_serves_another_family_client(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        first = await interactive(core)  # the Azure CLI, a family member
        assert first.account
        edge = await silent(core, client_id=EDGE)  # no sign-in for Edge: the family's token
        assert edge.account and edge.account.home_account_id == first.account.home_account_id
        await core.aclose()
        restarted = make_core(authority.authority, store)  # nobody to sign in
        for client_id in (EDGE, CLIENT_ID):
            token = await silent(restarted, client_id=client_id, force_refresh=True)
            assert token.account and token.account.username == USER
        await restarted.aclose()

    asyncio.run(scenario())


def test_a_version_2_store_is_split_by_account(authority, tmp_path: Path) -> None:
    path = tmp_path / "store.enc"

    async def old_daemon() -> dict[str, str]:
        core = make_core(authority.authority, None, person())
        tokens = {}
        for who in (USER, SECOND):
            core._open_url = person(who)
            token = await interactive(core)
            assert token.account
            tokens[token.account.home_account_id] = token.access_token
        # one plain cache holding both accounts, as the single-file store kept it
        whole = msal.SerializableTokenCache()
        merged: dict[str, dict[str, object]] = {}
        for hid in tokens:
            for kind, entries in json.loads(core.engine.partition(hid).serialize()).items():
                merged.setdefault(kind, {}).update(entries)
        whole.deserialize(json.dumps(merged))
        doc = {"core": 2, "msalCaches": {"plain": whole.serialize()},
               "accounts": core.accounts.entries(), "defaultAccount": None,
               "defaultChosen": False}
        Store(path, use_secret_service=False).save(doc)
        await core.aclose()
        return tokens

    async def new_daemon(tokens: dict[str, str]) -> None:
        core = make_core(authority.authority, path)  # nobody to sign in
        assert {a.home_account_id for a in await accounts(core)} == set(tokens)
        for hid, access_token in tokens.items():  # the cached access tokens came along
            assert _hids_in(core.engine.partition(hid).serialize()) == {hid}
            account = next(a for a in await accounts(core) if a.home_account_id == hid)
            assert (await silent(core, account=account)).access_token == access_token
        await core.aclose()
        assert len(list(tmp_path.glob("store.enc.migrated-*"))) == 1
        store = AccountStore(path, use_secret_service=False)
        assert set(store.open().accounts) == set(tokens) and store.legacy is None
        store.close()

    asyncio.run(new_daemon(asyncio.run(old_daemon())))
