"""Reading accounts back at scale: each thread's own reader sees every commit that returned
before its read (never an older refresh token), readers run while a writer commits, a closed or
reopened store is read afresh; the resident accounts stay within their byte budget and a dropped
account reads back what was last saved."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.records import Change, RecordStore
from authbroker.daemon.resident import ResidentAccounts

PLAIN = "plain"


def _account(hid: str) -> dict[str, object]:
    return {"homeAccountId": hid, "username": f"{hid}@contoso.example"}


def _tokens(hid: str, generation: int, pad: int = 0, *, extra: bool = True) -> dict[str, str]:
    rt = {"secret": f"rt-{hid}-{generation}", "pad": "x" * pad}
    states = {PLAIN: json.dumps({"RefreshToken": {f"{hid}-rt": rt}})}
    if extra:  # to the store, an account's states are an opaque name -> str
        states["#reserved"] = f"opaque-{generation}"
    return states


def _store(tmp_path: Path) -> RecordStore:
    path = tmp_path / "broker" / "store.enc"
    store = RecordStore(path, FileKeyProvider(path.with_name("store.key")))
    store.open()
    return store


def _secret(states: dict[str, str] | None) -> str:
    assert states is not None
    return str(json.loads(states[PLAIN])["RefreshToken"][next(iter(
        json.loads(states[PLAIN])["RefreshToken"]))]["secret"])


def test_a_thread_reader_sees_each_commit_that_returned(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit([Change("a", _account("a"), _tokens("a", 0))])
    with ThreadPoolExecutor(1) as reader:  # the same thread, so the same reader, each time
        assert reader.submit(store.read_tokens, "a").result() == _tokens("a", 0)
        for generation in range(1, 20):
            store.commit([Change("a", _account("a"), _tokens("a", generation))], durable=False)
            got = reader.submit(store.read_tokens, "a").result()
            assert got == _tokens("a", generation)  # never the previous refresh token
    store.close()


def test_readers_run_while_a_writer_commits(tmp_path: Path) -> None:
    store = _store(tmp_path)
    hids = [f"acct{n}" for n in range(20)]
    store.commit([Change(h, _account(h), _tokens(h, 0, pad=4000)) for h in hids])
    last: dict[str, int] = dict.fromkeys(hids, 0)  # the last generation whose commit returned
    stop = threading.Event()
    seen_stale: list[str] = []

    def read(n: int) -> int:
        reads = 0
        while not stop.is_set():
            hid = hids[(n + reads) % len(hids)]
            floor = last[hid]
            got = store.read_tokens(hid)
            generation = int(_secret(got).rsplit("-", 1)[1])
            if generation < floor:
                seen_stale.append(hid)
            assert got == _tokens(hid, generation, pad=4000)  # whole, never torn
            reads += 1
        return reads

    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(read, n) for n in range(4)]
        for generation in range(1, 40):
            hid = hids[generation % len(hids)]
            store.commit([Change(hid, _account(hid), _tokens(hid, generation, pad=4000))],
                         durable=False)
            last[hid] = generation
        stop.set()
        assert all(f.result() > 0 for f in readers)
    assert not seen_stale
    store.close()


def test_a_closed_store_reads_nothing_and_a_reopened_one_reads_afresh(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.commit([Change("a", _account("a"), _tokens("a", 1))])
    assert store.read_tokens("a") == _tokens("a", 1)
    store.close()
    assert store.read_tokens("a") is None  # this thread's old reader is not used
    again = RecordStore(store.path, store.keys)
    again.open()
    again.commit([Change("a", _account("a"), _tokens("a", 2))])
    again.close()
    store.open()
    assert store.read_tokens("a") == _tokens("a", 2)
    store.close()


def test_resident_accounts_stay_within_their_byte_budget(tmp_path: Path) -> None:
    store = _store(tmp_path)
    hids = [f"acct{n}" for n in range(30)]
    store.commit([Change(h, _account(h), _tokens(h, 0, pad=1000, extra=False)) for h in hids])
    size = sum(len(v) for v in _tokens("acct0", 0, pad=1000, extra=False).values())
    resident = ResidentAccounts(limit=1000, budget=5 * size)
    resident.loader = store.read_tokens
    for _ in range(2):
        for hid in hids:
            with resident.hold(hid):
                resident.tokens(hid)
            assert resident.weight <= 6 * size and len(resident) <= 6  # the soft bound: + 1
    assert resident.dropped >= len(hids) * 2 - 6
    assert resident.loaded() == hids[-len(resident):]  # the most recently used stay
    store.close()


def test_a_dropped_account_reads_back_what_was_last_saved(tmp_path: Path) -> None:
    store = _store(tmp_path)
    hids = ["a", "b", "c", "d"]
    store.commit([Change(h, _account(h), _tokens(h, 0, extra=False)) for h in hids])
    resident = ResidentAccounts(limit=2)
    resident.loader = store.read_tokens
    with resident.hold("a"):
        tokens = resident.tokens("a")
        rt = next(iter(tokens.partitions[PLAIN].search("RefreshToken")))
        tokens.partitions[PLAIN].modify("RefreshToken", rt, {"secret": "rt-a-rotated"})
        states = resident.snapshot("a")
    assert states is not None
    store.commit([Change("a", _account("a"), states)], durable=False)
    resident.saved(["a"])
    for hid in ("b", "c", "d"):  # a is dropped
        with resident.hold(hid):
            resident.tokens(hid)
    assert "a" not in resident.loaded()
    with resident.hold("a"):
        again = resident.tokens("a")
        assert again is not tokens and again.snapshot() == states  # what was saved, read back
        assert "rt-a-rotated" in [e["secret"] for e in again.partitions[PLAIN].search(
            "RefreshToken")]
    store.close()
