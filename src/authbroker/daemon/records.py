"""The daemon's account store: SQLite (WAL), one row per account, each field AES-256-GCM sealed.

Tables (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    accounts(hid TEXT PRIMARY KEY, kid BLOB, account BLOB, tokens BLOB)
    meta(name TEXT PRIMARY KEY, kid BLOB, value BLOB)        -- one row, name "state"
    quarantine(id INTEGER PRIMARY KEY, hid TEXT, reason TEXT, stamp TEXT, kid BLOB,
               account BLOB, tokens BLOB)

A sealed field is ``version (2) · key id (8) · nonce (12) · ciphertext+tag`` and its associated
data is that header plus the field's kind and the row's key (the homeAccountId), so a field cannot
be moved to another row or column, nor an old format's field replayed as a newer one. ``account``
(the wire object, small) is read for every row at open; ``tokens`` (the account's msal partitions)
only when the account is first used. A field that does not open (damaged, altered, moved) moves its
row to ``quarantine`` alone, with a logged error; the other accounts stay. A field sealed with a
key that is not at hand now (the keyring is locked or away, so the store key fell back to the key
file) is left where it is, unread and unchanged (the meta row is not overwritten either), and read
again at the next start that has the key. A database file SQLite cannot read at all is renamed
``<name>.corrupt-<stamp>`` and the store starts empty. Commits are one transaction per call;
``durable=True`` (sign-ins, removals) commits with ``synchronous=FULL`` (the WAL is fsynced before
the call returns), else ``NORMAL`` (survives the daemon's crash, not a power cut). Every method
blocks: the broker calls them from its executor. Reading an account's tokens uses a connection of
the calling thread's own (WAL readers do not wait for a writer nor for each other; each read is its
own transaction, so it sees every commit that returned before it); writes and repairs share one
connection behind a lock. Nothing secret is logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authbroker.daemon.keys import KeyProvider
from authbroker.daemon.store import key_id  # the single-file store's fingerprint
from authbroker.files import ensure_private_dir, fsync_dir

log = logging.getLogger(__name__)

RECORD_VERSION = 2  # the single-file store (store.py) was format 1
SCHEMA_VERSION = 1
#: Each reading thread's page cache (KiB): a record is read once per load, the OS caches the file.
READER_CACHE_KIB = 256
_HEADER = struct.Struct(">H8s12s")
ACCOUNT, TOKENS, META = b"account", b"tokens", b"meta"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (hid TEXT PRIMARY KEY, kid BLOB NOT NULL,
                                     account BLOB NOT NULL, tokens BLOB);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, kid BLOB NOT NULL, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (id INTEGER PRIMARY KEY, hid TEXT, reason TEXT,
                                       stamp TEXT, kid BLOB, account BLOB, tokens BLOB);
"""


class RecordError(Exception):
    """A sealed field does not open; the message names why, never its contents."""


class KeyNotAtHand(RecordError):
    """A sealed field names a key the provider does not have now: kept, not quarantined."""


def seal(value: Any, key: bytes, kind: bytes, hid: str) -> bytes:
    plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header = _HEADER.pack(RECORD_VERSION, key_id(key), secrets.token_bytes(12))
    aad = header + kind + b"\0" + hid.encode("utf-8")
    return header + AESGCM(key).encrypt(header[-12:], plaintext, aad)


def unseal(blob: bytes, keys: list[bytes], kind: bytes, hid: str) -> Any:
    if len(blob) < _HEADER.size + 16:
        raise RecordError(f"truncated ({len(blob)} bytes)")
    header = bytes(blob[: _HEADER.size])
    version, kid, nonce = _HEADER.unpack(header)
    if version != RECORD_VERSION:
        raise RecordError(f"unsupported record version {version}")
    key = next((k for k in keys if hmac.compare_digest(key_id(k), kid)), None)
    if key is None:
        raise KeyNotAtHand("encrypted with a key that is not available")
    try:
        plaintext = AESGCM(key).decrypt(nonce, bytes(blob[_HEADER.size :]),
                                        header + kind + b"\0" + hid.encode("utf-8"))
        return json.loads(plaintext.decode("utf-8"))
    except InvalidTag:
        raise RecordError("authentication failed (damaged, altered or moved)") from None
    except (UnicodeDecodeError, ValueError):
        raise RecordError("decrypted contents are not valid JSON") from None


@dataclass
class Change:
    """One account's new state: ``account`` None deletes the row; ``tokens`` None keeps them."""

    hid: str
    account: Mapping[str, Any] | None
    tokens: Mapping[str, str] | None = None


@dataclass
class Loaded:
    """What :meth:`RecordStore.open` read: the meta value and every readable account entry."""

    meta: dict[str, Any] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    exists: bool = False


class RecordStore:
    """The SQLite file at ``path``; thread-safe (one writing connection behind a lock, a
    reading one per thread)."""

    def __init__(self, path: Path, keys: KeyProvider) -> None:
        self.path = Path(path)
        self.keys = keys
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._local = threading.local()  # this thread's reader and the generation it is of
        self._readers: list[sqlite3.Connection] = []
        self._generation = 0  # bumped when the file is closed: readers of before reconnect
        self.held = 0  # rows (and the meta row) sealed with a key not at hand: kept unread
        self._meta_held = False  # the meta row is one of them: it is not overwritten

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            ensure_private_dir(self.path.parent)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                fsync_dir(self.path.parent)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except sqlite3.DatabaseError:
                db.close()
                raise
            self._db = db
        return self._db

    def _reader(self) -> sqlite3.Connection | None:
        """This thread's reading connection (None: the store is not open)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.generation == self._generation:
            return db
        with self._lock:
            if self._db is None:
                return None
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only=1")
            db.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
            self._readers.append(db)
            self._local.db, self._local.generation = db, self._generation
        return db

    def _close_readers(self) -> None:
        """Under ``_lock``: every thread's reader goes (a thread reading now falls back)."""
        self._generation += 1
        for db in self._readers:
            db.close()
        self._readers.clear()

    def close(self) -> None:
        with self._lock:
            self._close_readers()
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- reading ------------------------------------------------------------------------------

    def open(self) -> Loaded:
        """Every account entry and the meta value; ``exists`` False when there is no file."""
        with self._lock:
            if not self.path.exists():
                return Loaded()
            try:
                return self._read_all(self._connect())
            except sqlite3.DatabaseError as exc:
                self._move_aside(type(exc).__name__)
                return Loaded()

    def _read_all(self, db: sqlite3.Connection) -> Loaded:
        keys = self.keys.keys()
        loaded = Loaded(exists=True)
        self.held, self._meta_held = 0, False
        for (value,) in db.execute("SELECT value FROM meta WHERE name='state'").fetchall():
            try:
                loaded.meta = dict(unseal(value, keys, META, ""))
            except KeyNotAtHand:
                self.held, self._meta_held = 1, True
            except (RecordError, TypeError, ValueError) as exc:
                log.error("the store's default-account record is unreadable (%s); reset", exc)
                db.execute("DELETE FROM meta")
        bad: list[tuple[str, str]] = []
        for hid, blob in db.execute("SELECT hid, account FROM accounts").fetchall():
            try:
                loaded.accounts[hid] = dict(unseal(blob, keys, ACCOUNT, hid))
            except KeyNotAtHand:
                self.held += 1
            except (RecordError, TypeError, ValueError) as exc:
                bad.append((hid, str(exc)))
        for hid, reason in bad:
            self._quarantine(db, hid, reason)
        if self.held:
            log.error("%d of the store's records are sealed with a key that is not at hand "
                      "(is the keyring locked?): left unread and unchanged; unlock it and "
                      "restart the daemon to have them back", self.held)
        self._rekey(db, keys)
        return loaded

    def read_tokens(self, hid: str) -> dict[str, str] | None:
        """The account's msal partitions by capability set; None if none (or quarantined)."""
        query = "SELECT tokens FROM accounts WHERE hid=?"
        db = self._reader()
        if db is None:
            return None
        try:
            rows = db.execute(query, (hid,)).fetchall()  # all: the read transaction ends
        except sqlite3.ProgrammingError:  # closed meanwhile: the store closed or was replaced
            with self._lock:
                if self._db is None:
                    return None
                rows = self._db.execute(query, (hid,)).fetchall()
        if not rows or rows[0][0] is None:
            return None
        try:
            value = unseal(rows[0][0], self.keys.keys(), TOKENS, hid)
            if not isinstance(value, dict):
                raise RecordError("not a JSON object")
        except KeyNotAtHand:
            return None  # kept for a start that has the key
        except RecordError as exc:
            with self._lock:  # unless a commit replaced the row meanwhile
                if self._db is not None and self._db.execute(query, (hid,)).fetchall() == rows:
                    self._quarantine(self._db, hid, str(exc))
            return None
        return {str(k): str(v) for k, v in value.items()}

    # -- writing ------------------------------------------------------------------------------

    def commit(self, changes: Iterable[Change], meta: Mapping[str, Any] | None = None,
               *, durable: bool = True) -> int:
        """Write the changes (and the meta value) in one transaction; the bytes sealed."""
        with self._lock:
            return self._commit(self._connect(), changes, meta, durable)

    def _commit(self, db: sqlite3.Connection, changes: Iterable[Change],
                meta: Mapping[str, Any] | None, durable: bool) -> int:
        key = self.keys.keys()[0]
        kid, written, rows = key_id(key), 0, []
        for change in changes:  # seal first: the transaction stays short
            account = None if change.account is None else seal(
                change.account, key, ACCOUNT, change.hid)
            tokens = None if change.tokens is None else seal(
                change.tokens, key, TOKENS, change.hid)
            written += len(account or b"") + len(tokens or b"")
            rows.append((change.hid, account, tokens))
        if meta is not None and self._meta_held:
            log.warning("the default account and device are not saved: the stored ones are "
                        "sealed with a key that is not at hand (kept for when it is)")
            meta = None
        sealed_meta = None if meta is None else seal(dict(meta), key, META, "")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            for hid, account, tokens in rows:
                self._write_row(db, kid, hid, account, tokens)
            if sealed_meta is not None:
                written += len(sealed_meta)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?, ?)",
                           (kid, sealed_meta))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return written

    @staticmethod
    def _write_row(db: sqlite3.Connection, kid: bytes, hid: str, account: bytes | None,
                   tokens: bytes | None) -> None:
        if account is None:
            db.execute("DELETE FROM accounts WHERE hid=?", (hid,))
        elif tokens is None:
            db.execute("INSERT INTO accounts VALUES (?, ?, ?, NULL) ON CONFLICT(hid) "
                       "DO UPDATE SET account=excluded.account",  # kid: the older of the two
                       (hid, kid, account))
        else:
            db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?)",
                       (hid, kid, account, tokens))

    # -- repairs ------------------------------------------------------------------------------

    def _quarantine(self, db: sqlite3.Connection, hid: str, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO quarantine (hid, reason, stamp, kid, account, tokens) "
                   "SELECT hid, ?, ?, kid, account, tokens FROM accounts WHERE hid=?",
                   (reason, stamp, hid))
        db.execute("DELETE FROM accounts WHERE hid=?", (hid,))
        db.execute("COMMIT")
        log.error("the store's record of account %s is unreadable (%s); moved it to the "
                  "quarantine table, the other accounts stay", hid, reason)

    def _rekey(self, db: sqlite3.Connection, keys: list[bytes]) -> None:
        """Records sealed with an older key (the key moved) are sealed again with the current
        one, then the older key is retired, as the single-file store did on its next save."""
        if len(keys) < 2:
            return
        current = key_id(keys[0])
        stale = db.execute("SELECT hid, account, tokens FROM accounts WHERE kid<>?",
                           (current,)).fetchall()
        changes = []
        for hid, account, tokens in stale:
            try:
                changes.append(Change(hid, unseal(account, keys, ACCOUNT, hid),
                                      None if tokens is None else
                                      unseal(tokens, keys, TOKENS, hid)))
            except KeyNotAtHand:
                continue  # neither of our keys: kept for a start that has it
            except RecordError as exc:
                self._quarantine(db, hid, str(exc))
        row = db.execute("SELECT value FROM meta WHERE name='state'").fetchone()
        try:
            meta = None if row is None else unseal(row[0], keys, META, "")
        except RecordError:
            meta = None
        self._commit(db, changes, meta, True)
        self.keys.retire_old_keys()

    def _move_aside(self, reason: str) -> None:
        self._close_readers()
        if self._db is not None:
            self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            dest, n = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}"), n + 1
        for suffix in ("-wal", "-shm"):
            sidecar = self.path.with_name(self.path.name + suffix)
            if sidecar.exists():
                os.rename(sidecar, dest.with_name(dest.name + suffix))
        os.rename(self.path, dest)
        fsync_dir(self.path.parent)
        log.error("the store %s is unreadable (%s); moved it aside to %s and starting with an "
                  "empty store", self.path, reason, dest.name)
