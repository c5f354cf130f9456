"""Which accounts' partitions are in memory: a few, the least recently used dropped once saved.

The engine keeps an account's :class:`~authbroker.daemon.partitions.AccountTokens` here. An
account is read from the store (``loader``) on first use and stays while it is used; beyond
:data:`LOADED_ACCOUNTS` accounts, or once the accounts' saved states add up to more than
:data:`RESIDENT_BYTES` (an account's weight is the length of its serialized partitions, as read
or last snapshotted: parsed, it takes about 1.7 times that), the least recently used are
dropped, but only an account that

- no thread holds or waits for (:meth:`ResidentAccounts.hold`, the account's lock),
- has no change since its last snapshot (``AccountTokens.has_changed``), and
- has no snapshot whose commit has not landed (:meth:`snapshot` … :meth:`saved`),

so what the store holds for a dropped account is what was in memory: its next use reads the
current refresh token back, never a stale one (an authority with reuse detection would revoke
the sign-in). Without a loader (no store: ``--ephemeral``, tests) nothing is dropped. The bound
is soft: accounts in use or not yet saved stay even beyond it. An account's lock lives as long
as the account is loaded or a thread holds or waits for it, so the locks are bounded too and a
thread waiting for an account always shares its lock with the thread holding it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping

from authbroker.daemon.partitions import AccountTokens

log = logging.getLogger(__name__)

#: How many accounts' partitions stay in memory at most, however small they are.
LOADED_ACCOUNTS = 1024
#: How many bytes of serialized partitions stay in memory (about 2 kB per cached token: some
#: 64 accounts of 10 scopes, about 2.5 MB once parsed). Beyond it, or beyond LOADED_ACCOUNTS,
#: the least recently used saved accounts are dropped. More costs more than it saves: each
#: resident token lengthens the cyclic collector's full passes (event-loop stalls) and RSS.
RESIDENT_BYTES = 3 * 2**19
#: Reads an account's saved partitions (by capability-set name), or None (the store's).
Loader = Callable[[str], Mapping[str, str] | None]


class _Slot:
    """An account's lock and how many threads hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users = 0


class ResidentAccounts:
    """Loaded accounts in least-recently-used order, with their locks. Thread-safe."""

    def __init__(self, limit: int = LOADED_ACCOUNTS, budget: int = RESIDENT_BYTES) -> None:
        self.limit, self.budget = limit, budget
        self.loader: Loader | None = None
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, AccountTokens] = OrderedDict()
        self._slots: dict[str, _Slot] = {}
        self._touched: set[str] = set()  # served since their last snapshot
        self._unsaved: set[str] = set()  # snapshotted, the commit not landed yet
        self._weights: dict[str, int] = {}  # loaded accounts' serialized sizes (bytes)
        self.weight = 0  # their sum
        self.dropped = 0  # accounts dropped so far (measurements, tests)

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)

    @contextlib.contextmanager
    def hold(self, hid: str) -> Iterator[None]:
        """The account's lock (re-entrant); the account is not dropped while it is held or
        waited for."""
        with self._lock:
            slot = self._slots.setdefault(hid, _Slot())
            slot.users += 1
        try:
            with slot.lock:
                yield
        finally:
            with self._lock:
                slot.users -= 1
                if not slot.users and hid not in self._loaded:
                    del self._slots[hid]
            self._evict()

    def tokens(self, hid: str) -> AccountTokens:
        """The account's partitions, read with the loader if not in memory. Hold the account."""
        with self._lock:
            tokens = self._loaded.get(hid)
            if tokens is not None:
                self._loaded.move_to_end(hid)
                return tokens
        self._evict(room=1)  # before reading: the bound holds while the account is read
        states = self.loader(hid) if self.loader else None
        try:
            tokens = AccountTokens(states)
        except ValueError:
            log.error("account %s: its saved token cache is unreadable; it signs in again", hid)
            tokens = AccountTokens()
        with self._lock:
            found = self._loaded.setdefault(hid, tokens)
            if found is tokens:
                self._weigh(hid, states)
            return found

    def _weigh(self, hid: str, states: Mapping[str, str] | None) -> None:
        """Record the account's serialized size (under ``_lock``)."""
        size = sum(len(v) for v in states.values()) if states else 0
        self.weight += size - self._weights.get(hid, 0)
        self._weights[hid] = size

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def touch(self, hid: str) -> None:
        with self._lock:
            if hid in self._loaded:
                self._touched.add(hid)

    def changed(self) -> list[str]:
        """Accounts served since their last snapshot whose partitions changed."""
        with self._lock:
            return [h for h in self._touched if h in self._loaded and self._loaded[h].has_changed]

    def snapshot(self, hid: str) -> dict[str, str] | None:
        """The account's partitions as saved (None: not in memory, the store has them). Hold
        the account; the account stays until :meth:`saved` names it."""
        with self._lock:
            tokens = self._loaded.get(hid)
            self._touched.discard(hid)
            if tokens is not None:
                self._unsaved.add(hid)
        if tokens is None:
            return None
        states = tokens.snapshot()
        with self._lock:
            if hid in self._loaded:
                self._weigh(hid, states)
        return states

    def saved(self, hids: Iterable[str]) -> None:
        """The commit holding these accounts' snapshots landed: they may be dropped."""
        with self._lock:
            self._unsaved.difference_update(hids)
        self._evict()

    def _droppable(self, hid: str, tokens: AccountTokens) -> bool:
        slot = self._slots.get(hid)
        return (slot is None or not slot.users) and hid not in self._unsaved \
            and not tokens.has_changed

    def _evict(self, room: int = 0) -> None:
        """Drop the least recently used droppable accounts beyond the limit (less ``room``)
        and the byte budget."""
        if self.loader is None:
            return
        with self._lock:
            excess = len(self._loaded) + room - self.limit
            if excess <= 0 and self.weight <= self.budget:
                return
            drop, weight = [], self.weight
            for hid, tokens in self._loaded.items():  # least recently used first
                if excess <= 0 and weight <= self.budget:
                    break
                if self._droppable(hid, tokens):
                    drop.append(hid)
                    excess -= 1
                    weight -= self._weights.get(hid, 0)
            for hid in drop:
                del self._loaded[hid]
                self._touched.discard(hid)
                self._slots.pop(hid, None)  # nobody holds or waits for it
                self.weight -= self._weights.pop(hid, 0)
            self.dropped += len(drop)
