"""The store keeps the daemon's document across restarts, encrypted, atomically, 0600."""

from __future__ import annotations

import json
import logging
import secrets
import stat
import threading
from pathlib import Path

import pytest

from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.store import FORMAT_VERSION, MAGIC, Store, default_store_path


def _doc(token: str) -> dict:
    return {
        "accounts": {"uid.tid": {"username": "user@contoso.example", "name": "Test User"}},
        "default_account_id": "uid.tid",
        "msal_cache": json.dumps({"RefreshToken": {"k": {"secret": token}}}),
    }


def _store(path: Path) -> Store:
    return Store(path, FileKeyProvider(path.with_name("store.key")))


def test_round_trip_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "broker" / "store.enc"
    first = _store(path)
    assert first.load() == {}  # missing file: empty, nothing created
    assert not path.exists()
    doc = _doc("fake-rt-" + secrets.token_hex(16))
    first.save(doc)
    assert _store(path).load() == doc  # a new instance = a restarted daemon
    doc["default_account_id"] = None
    first.save(doc)
    assert _store(path).load() == doc


def test_file_holds_no_plaintext_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "broker" / "store.enc"
    token = "fake-refresh-token-" + secrets.token_hex(16)
    store = _store(path)
    store.save(_doc(token))
    data = path.read_bytes()
    for needle in (token, "user@contoso.example", "RefreshToken", "accounts"):
        assert needle.encode() not in data
    assert token.encode() not in path.with_name("store.key").read_bytes()
    assert data.startswith(MAGIC)
    assert int.from_bytes(data[len(MAGIC) : len(MAGIC) + 2], "big") == FORMAT_VERSION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("store.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.save(_doc(token))
    assert path.read_bytes() != data  # a fresh nonce per write
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.enc", "store.key"]


def test_default_store_path_follows_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_store_path().parent == tmp_path / "authbroker" / "broker"


def test_concurrent_saves_from_threads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    store = _store(path)
    written: set[tuple[int, int]] = set()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.save({"writer": n, "seq": i, "payload": f"{n}-{i}-" * 2000})
                written.add((n, i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING):
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    assert len(written) == 200
    doc = _store(path).load()
    assert (doc["writer"], doc["seq"]) in written
    assert doc["payload"] == f"{doc['writer']}-{doc['seq']}-" * 2000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.enc", "store.key"]
