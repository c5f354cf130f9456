"""The record store: one sealed row per account, round trips, no plaintext in the database or
its WAL, records that cannot be swapped, one damaged row quarantined alone, a key move."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import stat
from pathlib import Path

import pytest

from authbroker.daemon.keys import FileKeyProvider, new_key
from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.records import Change, RecordStore

TOKEN = "fake-refresh-token-" + secrets.token_hex(16)
USERNAME = "user@contoso.example"


def _account(n: int) -> dict[str, object]:
    return {"homeAccountId": f"uid{n}.tid", "username": f"u{n}@contoso.example",
            "environment": "login.example", "lastSignIn": float(n)}


def _tokens(n: int, token: str = TOKEN) -> dict[str, str]:
    return {"plain": json.dumps({"RefreshToken": {f"k{n}": {"secret": f"{token}-{n}"}}})}


def _store(path: Path) -> RecordStore:
    return RecordStore(path, FileKeyProvider(path.with_name("store.key")))


def _fill(path: Path, count: int) -> RecordStore:
    store = _store(path)
    store.commit([Change(f"uid{n}.tid", _account(n), _tokens(n)) for n in range(count)],
                 {"core": 3, "defaultAccount": "uid0.tid", "defaultChosen": True})
    return store


def test_round_trip_one_row_per_account(tmp_path: Path) -> None:
    path = tmp_path / "broker" / "store.enc"
    assert _store(path).open().exists is False and not path.exists()  # nothing created
    _fill(path, 3).close()
    again = _store(path)
    loaded = again.open()
    assert loaded.meta["defaultAccount"] == "uid0.tid"
    assert loaded.accounts == {f"uid{n}.tid": _account(n) for n in range(3)}
    assert again.read_tokens("uid2.tid") == _tokens(2)
    # the account's entry alone changes: its tokens stay; deleting drops that row only
    again.commit([Change("uid2.tid", dict(_account(2), username="new@x.example"))])
    again.commit([Change("uid1.tid", None)])
    again.close()
    third = _store(path)
    loaded = third.open()
    assert sorted(loaded.accounts) == ["uid0.tid", "uid2.tid"]
    assert loaded.accounts["uid2.tid"]["username"] == "new@x.example"
    assert third.read_tokens("uid2.tid") == _tokens(2)
    third.close()


def test_no_secret_in_the_database_or_its_wal_and_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "broker" / "store.enc"
    store = _fill(path, 2)  # still open: the WAL holds the last commits
    files = [p for p in path.parent.iterdir() if p.name.startswith("store.enc")]
    assert {p.name for p in files} >= {"store.enc", "store.enc-wal"}
    raw = b"".join(p.read_bytes() for p in files)
    for needle in (TOKEN, USERNAME, "u0@contoso", "RefreshToken", "defaultAccount"):
        assert needle.encode() not in raw
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.close()
    assert not path.with_name("store.enc-wal").exists()  # checkpointed at close


def _swap(path: Path, column: str) -> None:
    db = sqlite3.connect(path)
    (a,), (b,) = db.execute(f"SELECT {column} FROM accounts ORDER BY hid").fetchall()
    db.execute(f"UPDATE accounts SET {column}=? WHERE hid='uid0.tid'", (b,))
    db.execute(f"UPDATE accounts SET {column}=? WHERE hid='uid1.tid'", (a,))
    db.commit()
    db.close()


@pytest.mark.parametrize("column", ["account", "tokens"])
def test_records_cannot_be_swapped_between_accounts(column: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    _fill(path, 2).close()
    _swap(path, column)
    store = _store(path)
    with caplog.at_level(logging.ERROR):
        loaded = store.open()
        tokens = [store.read_tokens(h) for h in ("uid0.tid", "uid1.tid")]
    if column == "account":
        assert loaded.accounts == {}
    assert tokens == [None, None]  # neither account gets the other's tokens
    assert "authentication failed" in caplog.text and TOKEN not in caplog.text
    store.close()


def _damage(path: Path, hid: str, column: str) -> None:
    db = sqlite3.connect(path)
    (blob,) = db.execute(f"SELECT {column} FROM accounts WHERE hid=?", (hid,)).fetchone()
    blob = blob[:-20] + bytes([blob[-20] ^ 1]) + blob[-19:]
    db.execute(f"UPDATE accounts SET {column}=? WHERE hid=?", (blob, hid))
    db.commit()
    db.close()


@pytest.mark.parametrize("column", ["account", "tokens"])
def test_one_damaged_row_is_quarantined_alone(column: str, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    _fill(path, 5).close()
    _damage(path, "uid3.tid", column)
    store = _store(path)
    with caplog.at_level(logging.ERROR):
        loaded = store.open()
        assert store.read_tokens("uid3.tid") is None
    others = [f"uid{n}.tid" for n in (0, 1, 2, 4)]
    assert set(loaded.accounts) - {"uid3.tid"} == set(others)
    assert [store.read_tokens(h) for h in others] == [_tokens(n) for n in (0, 1, 2, 4)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "uid3.tid" in errors[0] and "quarantine" in errors[0]
    assert TOKEN not in caplog.text
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT hid FROM quarantine").fetchall() == [("uid3.tid",)]  # kept
    assert db.execute("SELECT count(*) FROM accounts").fetchone() == (4,)
    db.close()
    # the daemon goes on: the account can be written again
    again = _store(path)
    again.open()
    again.commit([Change("uid3.tid", _account(3), _tokens(3))])
    assert again.read_tokens("uid3.tid") == _tokens(3)
    again.close()


@pytest.mark.parametrize("bad", [b"SQLite format 3\0" + b"\xff" * 200, b"junk" * 100])
def test_an_unreadable_file_is_moved_aside(bad: bytes, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    path.write_bytes(bad)
    store = AccountStore(path, FileKeyProvider(tmp_path / "store.key"))
    with caplog.at_level(logging.ERROR):
        loaded = store.open()
    assert loaded.accounts == {} and store.legacy is None
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("store.enc.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == bad
    assert "moved it aside" in caplog.text
    store.commit([Change("uid0.tid", _account(0), _tokens(0))])  # and goes on
    store.close()
    assert _store(path).open().accounts == {"uid0.tid": _account(0)}


class _MovedKey:
    """The key moved (keyring back): the new key first, the old one still readable."""

    key_source = "secret-service"

    def __init__(self, new: bytes, old: bytes) -> None:
        self._keys, self.retired = [new, old], False

    def keys(self) -> list[bytes]:
        return list(self._keys)

    def retire_old_keys(self) -> None:
        self._keys, self.retired = self._keys[:1], True


def test_a_key_move_reads_old_records_and_reseals_them(tmp_path: Path) -> None:
    path = tmp_path / "store.enc"
    _fill(path, 3).close()
    old = (tmp_path / "store.key").read_bytes()
    moved = _MovedKey(new_key(), old)
    store = RecordStore(path, moved)
    assert len(store.open().accounts) == 3
    assert moved.retired
    store.close()
    only_new = _MovedKey(moved.keys()[0], new_key())
    again = RecordStore(path, only_new)
    loaded = again.open()
    assert len(loaded.accounts) == 3 and loaded.meta["defaultAccount"] == "uid0.tid"
    assert again.read_tokens("uid1.tid") == _tokens(1)
    again.close()


def test_records_under_a_key_not_at_hand_are_kept_for_when_it_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The keyring locked at start: the store key fell back to a new key file. Nothing is
    quarantined or overwritten; with the keyring back every account and the default are read."""
    path = tmp_path / "store.enc"
    _fill(path, 3).close()
    keyring_key = (tmp_path / "store.key").read_bytes()
    (tmp_path / "store.key").unlink()
    fallback = FileKeyProvider(tmp_path / "fallback.key")
    locked = RecordStore(path, fallback)
    with caplog.at_level(logging.ERROR):
        loaded = locked.open()
    assert loaded.accounts == {} and loaded.meta == {} and locked.held == 4
    assert "not at hand" in caplog.text and "quarantine" not in caplog.text
    assert locked.read_tokens("uid1.tid") is None
    locked.commit([Change("uid9.tid", _account(9), _tokens(9))],  # a sign-in meanwhile
                  {"core": 3, "defaultAccount": "uid9.tid", "defaultChosen": True})
    locked.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone() == (0,)
    db.close()
    back = RecordStore(path, _MovedKey(keyring_key, fallback.keys()[0]))
    loaded = back.open()
    assert sorted(loaded.accounts) == ["uid0.tid", "uid1.tid", "uid2.tid", "uid9.tid"]
    assert loaded.meta["defaultAccount"] == "uid0.tid"  # not overwritten while locked
    assert back.read_tokens("uid1.tid") == _tokens(1) and back.held == 0
    back.close()


def test_a_change_writes_one_account_whatever_the_store_holds(tmp_path: Path) -> None:
    sizes = {}
    for count in (1, 1000):
        store = _fill(tmp_path / f"s{count}" / "store.enc", count)
        sizes[count] = store.commit([Change("uid0.tid", _account(0), _tokens(0, "rotated"))],
                                    durable=False)
        store.close()
    assert sizes[1000] == sizes[1]
