"""Per-account partitions through the broker: one account's tokens apart from another's, a
family refresh token found in its account's partition (FOCI), partitions read on first use,
removal touching one account, a version 2 single-file store split by account, and at most N
accounts in memory (``resident.py``): the others read back from the store, refreshing without
replaying a refresh token, never dropped while held, changed or not yet saved."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import weakref
from pathlib import Path

import msal
import pytest

from authbroker import broker1
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.partitions import AccountTokens, Partition
from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.resident import ResidentAccounts
from authbroker.daemon.store import Store
from fixtures.authority import start_authority
from fixtures.broker_core import (
    CLIENT_ID,
    PASSWORD,
    SECOND,
    USER,
    accounts,
    interactive,
    make_core,
    person,
    silent,
    two_sign_ins,
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
        first, second = await two_sign_ins(core)
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


@pytest.mark.parametrize("limit", [64, 1])
def test_a_version_2_store_is_split_by_account(authority, tmp_path: Path, limit: int) -> None:
    """(With ``limit`` 1, the converted accounts leave memory and are read back from the new
    database.)"""
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
        core.engine.resident.limit = limit
        assert {a.home_account_id for a in await accounts(core)} == set(tokens)
        assert core.engine.loaded_accounts <= limit
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


# -- at most N accounts in memory ------------------------------------------------------------------
FLEET = [f"member{i:02d}@fleet.example" for i in range(10)]
LIMIT = 3


@pytest.fixture(scope="module")
def fleet_authority(authority, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A local authority (reuse detection on, as always) whose users are :data:`FLEET`."""
    tmp = tmp_path_factory.mktemp("fleet")
    users = [{"username": u, "password": PASSWORD, "name": u.split("@")[0]} for u in FLEET]
    (tmp / "users.json").write_text(json.dumps({"domain": "fleet.example", "users": users}))
    with start_authority(tmp, "--users", str(tmp / "users.json"), ca_from=authority) as running:
        yield running


def _bounded(core: BrokerCore, loads: list[tuple[str, int]]) -> None:
    """Keep the core's engine to LIMIT accounts; ``loads`` gets each account read from the store
    and how many accounts were in memory while it was read."""
    resident = core.engine.resident
    resident.limit = LIMIT
    read = core.engine.loader
    assert read is not None

    def spy(hid: str):  # type: ignore[no-untyped-def]
        loads.append((hid, len(resident)))
        return read(hid)

    core.engine.loader = spy


def test_at_most_n_accounts_stay_in_memory_and_evicted_ones_keep_refreshing(
        fleet_authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"
    url = fleet_authority.authority

    async def refresh_round(core: BrokerCore, signed: list[broker1.Account]) -> dict[str, str]:
        tokens = {}
        for account in signed:  # each redeems the refresh token it reads back: no replay
            token = await silent(core, authority=url, account=account, force_refresh=True)
            assert token.account and token.account.home_account_id == account.home_account_id
            tokens[account.home_account_id] = token.access_token
            assert core.engine.loaded_accounts <= LIMIT
        return tokens

    def room_was_made(loads: list[tuple[str, int]]) -> None:  # one call at a time: the bound
        assert loads and all(size < LIMIT for _, size in loads)  # holds while reading too
        loads.clear()

    async def first_run() -> dict[str, str]:
        core = make_core(url, store)
        await core.start()
        loads: list[tuple[str, int]] = []
        _bounded(core, loads)
        signed = []
        for username in FLEET:
            core._open_url = person(username)
            token = await interactive(core, authority=url)
            assert token.account
            signed.append(token.account)
            assert core.engine.loaded_accounts <= LIMIT
        assert core.engine.resident.dropped >= len(FLEET) - LIMIT
        room_was_made(loads)
        await refresh_round(core, signed)
        assert {hid for hid, _ in loads} == {a.home_account_id for a in signed}  # read back
        room_was_made(loads)
        await refresh_round(core, signed)  # twice: the rotated tokens were saved and read back
        room_was_made(loads)
        # concurrent refreshes: accounts in use or not yet saved stay, beyond the bound
        await asyncio.gather(*(silent(core, authority=url, account=a, force_refresh=True)
                               for a in signed))
        assert core.engine.loaded_accounts <= LIMIT  # once saved, they go
        loads.clear()
        last = await refresh_round(core, signed)
        room_was_made(loads)
        await core.aclose()
        return last

    async def second_run(last: dict[str, str]) -> None:
        core = make_core(url, store)  # nobody to sign in; the memo is empty
        await core.start()
        loads: list[tuple[str, int]] = []
        _bounded(core, loads)
        for account in await accounts(core):  # msal's cached tokens, read from the store
            token = await silent(core, authority=url, account=account)
            assert token.access_token == last[account.home_account_id]
            assert core.engine.loaded_accounts <= LIMIT
        assert sorted(hid for hid, _ in loads) == sorted(last)
        room_was_made(loads)
        await refresh_round(core, await accounts(core))
        room_was_made(loads)
        await core.aclose()

    asyncio.run(second_run(asyncio.run(first_run())))


def _fake_loader(calls: list[str]):  # type: ignore[no-untyped-def]
    def load(hid: str) -> dict[str, str] | None:
        calls.append(hid)
        return None

    return load


def test_a_held_changed_or_unsaved_account_is_not_dropped() -> None:
    calls: list[str] = []
    resident = ResidentAccounts(limit=2)
    resident.loader = _fake_loader(calls)
    waiting_has: list[AccountTokens] = []
    with resident.hold("a"):
        held = resident.tokens("a")
        waiter = threading.Thread(target=lambda: _wait_for(resident, "a", waiting_has))
        waiter.start()
        time.sleep(0.05)  # the waiter is queued on a's lock
        for hid in ("b", "c", "d", "e"):
            with resident.hold(hid):
                resident.tokens(hid)
        assert "a" in resident.loaded() and len(resident) == 2  # a held and waited for: kept
    waiter.join(5)
    assert waiting_has == [held]  # the waiter got the same account (and lock), not a reload
    assert calls.count("a") == 1

    def use(hid: str) -> None:
        with resident.hold(hid):
            resident.tokens(hid)

    with resident.hold("a"):
        resident.tokens("a").changed = True  # changed, not yet snapshotted
    use("f")
    assert resident.loaded() == ["a", "f"]  # a is now the least recently used
    use("g")
    assert resident.loaded() == ["a", "g"]  # changed: kept, f went instead
    with resident.hold("a"):
        assert resident.snapshot("a") is not None  # snapshotted: the commit has not landed
    use("h")
    assert resident.loaded() == ["a", "h"]
    resident.saved(["a"])  # the commit landed
    use("i")
    assert resident.loaded() == ["h", "i"]
    assert set(resident._slots) <= {"h", "i"}  # the locks go with the accounts
    assert calls == ["a", "b", "c", "d", "e", "f", "g", "h", "i"]  # each read once


def _wait_for(resident: ResidentAccounts, hid: str, out: list[AccountTokens]) -> None:
    with resident.hold(hid):
        out.append(resident.tokens(hid))


def test_without_a_loader_nothing_is_dropped() -> None:
    resident = ResidentAccounts(limit=1)
    for hid in ("a", "b", "c"):
        with resident.hold(hid):
            resident.tokens(hid)
    assert len(resident) == 3  # nowhere to read them back from: kept


def test_a_dropped_partition_is_freed_without_the_cyclic_collector() -> None:
    """msal's key makers close over the cache; a partition breaks that cycle, so a dropped
    account's tokens go at once (the oldest generation's collection seldom runs)."""
    gc.collect()
    gc.disable()
    try:
        part = Partition()
        part.add({"client_id": CLIENT_ID, "scope": ["s"],
                  "token_endpoint": "https://login.example/t/oauth2/v2.0/token",
                  "response": {"access_token": "at", "expires_in": 3600, "refresh_token": "rt"}})
        assert len(list(part.search("AccessToken"))) == 1
        freed = weakref.ref(part)
        del part
        assert freed() is None
    finally:
        gc.enable()
