"""The store file the daemon is given and what the broker writes to it, account by account.

:class:`AccountStore` is the file at the ``--store`` path (default ``store.enc`` in the state
directory, key in the Secret Service or ``<store>.key`` as before). It is the record store
(``records.py``, SQLite). A file of the single-file format (``store.py``, document version 1
or 2) found there is read once and converted: the new database is written beside it and
committed, the old file is hard-linked to ``<name>.migrated-<UTC stamp>``, and only then is the
database renamed over it (a crash before that rename leaves the old file, converted again at the
next start). A file that is neither is moved aside as ``<name>.corrupt-<stamp>``.

:class:`Persistence` is the broker's side: which accounts changed (the table's entries and the
engine's partitions), one transaction per flush holding just those accounts (never the whole
store), sealed and written in the executor; only once the commit landed may the engine drop those
accounts' partitions from memory. Callers await the flush before they reply, so a
token a caller received is on disk; flushes take turns and a flush writes everything changed
so far, so a burst of changes to one account is coalesced into the flush that is next.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.keys import DefaultKeyProvider, KeyProvider
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.records import Change, Loaded, RecordStore
from authbroker.daemon.store import MAGIC, Store
from authbroker.files import fsync_dir

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\0"
Run = Callable[..., Awaitable[Any]]


class AccountStore:
    """The store file: the record database, or a single-file store to convert once."""

    def __init__(self, path: Path, keys: KeyProvider | None = None, *,
                 use_secret_service: bool = True) -> None:
        self.path = Path(path)
        self.keys: KeyProvider = keys or DefaultKeyProvider(
            self.path.with_name(self.path.name + ".key"), use_secret_service=use_secret_service)
        self.records = RecordStore(self.path, self.keys)
        self.legacy: dict[str, Any] | None = None  # the old document while it is not converted

    @classmethod
    def of(cls, store: Store | AccountStore) -> AccountStore:
        """The account store at a single-file ``Store``'s path, with its key provider."""
        return store if isinstance(store, AccountStore) else cls(store.path, store.keys)

    def _kind(self) -> str | None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            log.error("cannot read the store %s (%s); starting empty", self.path, exc.strerror)
            return None
        if not head or head == SQLITE_MAGIC:
            return "records"
        return "legacy" if head.startswith(MAGIC) else "unknown"

    def open(self) -> Loaded:
        """The saved state; an old-format document is kept in ``legacy`` for the broker."""
        kind = self._kind()
        if kind == "records":
            return self.records.open()
        if kind is not None:  # the single-file reader moves an unreadable file aside
            doc = Store(self.path, self.keys).load()
            self.legacy = doc if self.path.exists() else None
        return Loaded()

    def read_tokens(self, hid: str) -> dict[str, str] | None:
        return self.records.read_tokens(hid)

    def commit(self, changes: Iterable[Change], meta: Mapping[str, Any] | None = None,
               *, durable: bool = True) -> int:
        if self.legacy is None:
            return self.records.commit(changes, meta, durable=durable)
        return self._convert(changes, meta)

    def _convert(self, changes: Iterable[Change], meta: Mapping[str, Any] | None) -> int:
        """Every account (``changes`` must hold them all) into a new database that replaces
        the single-file store once committed; the old file stays as ``.migrated-<stamp>``."""
        fresh = self.path.with_name(f"{self.path.name}.converting-{os.getpid()}")
        for leftover in self.path.parent.glob(f"{self.path.name}.converting-*"):
            with suppress(FileNotFoundError):  # a conversion that died half-way
                leftover.unlink()
        store = RecordStore(fresh, self.keys)
        written = store.commit(changes, meta, durable=True)
        store.close()  # checkpoints the WAL into the file and removes it
        if self.path.exists():
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            aside = self.path.with_name(f"{self.path.name}.migrated-{stamp}")
            try:
                os.link(self.path, aside)
            except OSError:  # no hard links here: a copy, synced before the rename below
                shutil.copy2(self.path, aside)
                with open(aside, "rb+") as fh:
                    os.fsync(fh.fileno())
        os.replace(fresh, self.path)
        fsync_dir(self.path.parent)
        self.legacy = None
        self.records.close()  # from now on the records are the converted database's: an
        self.records.open()  # account the engine drops from memory is read back from it
        log.info("the store %s was converted to one record per account (the old file is "
                 "kept beside it as %s.migrated-*)", self.path, self.path.name)
        return written

    def close(self) -> None:
        self.records.close()


class Persistence:
    """What changed since the last flush, written one account per row, in the executor."""

    def __init__(self, store: AccountStore | None, accounts: AccountTable,
                 engine: TokenEngine, run: Run) -> None:
        self.store, self.accounts, self.engine, self._run = store, accounts, engine, run
        self._dirty: set[str] = set()  # accounts whose table entry changed (or was removed)
        self._saved_meta: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self.failed = False  # the last flush failed: the next call retries
        self.last_written = 0  # bytes sealed by the last flush (measurements)

    async def start(self) -> None:
        if self.store is None:
            return
        try:
            loaded = await self._run(self.store.open)
        except (OSError, sqlite3.Error) as exc:  # what is written later adds to what is there
            log.error("cannot read the store %s (%s); starting empty", self.store.path, exc)
            loaded = Loaded()
        self.accounts.load(loaded.meta, loaded.accounts)
        if loaded.exists:
            self._saved_meta = self.accounts.meta()
        self.engine.loader = self.store.read_tokens
        if self.store.legacy is not None:
            self.accounts.apply_document(self.store.legacy, self.engine)
            await self.flush(durable=True)

    def touch(self, home_account_id: str) -> None:
        """The account's table entry changed (signed in, seen, removed)."""
        self._dirty.add(home_account_id)

    @property
    def pending(self) -> bool:
        return self.failed

    async def flush(self, *, durable: bool = False) -> None:
        """Write what changed (sign-ins and removals ``durable``: fsynced before returning)."""
        if self.store is None:
            return
        async with self._lock:
            converting = self.store.legacy is not None
            hids = {e["homeAccountId"] for e in self.accounts.entries()} if converting else set()
            hids |= self._dirty | set(self.engine.changed())
            meta = self.accounts.meta()
            if not hids and meta == self._saved_meta:
                self.failed = False
                return
            self._dirty -= hids
            entries = {hid: self.accounts.entry(hid) for hid in hids}
            try:
                self.last_written = await self._run(self._write, entries, meta, durable)
            except Exception as exc:  # the token is still good; the next call saves again
                log.error("could not save the broker store: %s", exc)
                self._dirty |= hids
                self.failed = True
            else:
                self._saved_meta = meta
                self.failed = False

    def _write(self, entries: Mapping[str, Mapping[str, Any] | None], meta: dict[str, Any],
               durable: bool) -> int:
        """In the executor: snapshot each changed account's partitions, seal, commit; then
        the engine may drop those accounts from memory (not before: the store must hold what
        it would read back). A failed commit keeps them in memory for the next flush."""
        assert self.store is not None
        # an account not in memory has no snapshot: the store keeps its tokens; a removed
        # account's (emptied) snapshot clears its change marks, its row goes
        snapshots = {hid: self.engine.snapshot(hid) for hid in entries}
        changes = [Change(hid, entry, None if entry is None else snapshots[hid])
                   for hid, entry in entries.items()]
        written = self.store.commit(changes, None if meta == self._saved_meta else meta,
                                    durable=durable)
        self.engine.saved(entries)
        return written

    async def aclose(self) -> None:
        await self.flush()
        if self.store is not None:
            await self._run(self.store.close)
