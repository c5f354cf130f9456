"""Memoised wire work for the hot path of a silent token, on both ends of the bus.

Asking again for a token one already has repeats the very same texts: a client sends the same
request JSON (the correlation id travels in its own argument), the daemon answers from its
cache with the very same ``TokenResult`` object, so its reply text repeats too. Parsing is
memoised by exact text (:class:`TextMemo`) and encoding by object identity
(:class:`IdentityMemo`). Both are small LRUs over frozen objects. Failures are never memoised:
a malformed text raises every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DEFAULT_ENTRIES = 256
#: Longer texts are parsed every time (they are not what clients repeat).
MAX_MEMO_TEXT_CHARS = 16 * 1024


class _Lru(Generic[T]):
    """A bounded table, safe to share between threads (a blocking client may be)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._table: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, key: Hashable) -> T | None:
        with self._lock:
            value = self._table.get(key)
            if value is not None:
                self._table.move_to_end(key)
            return value

    def _put(self, key: Hashable, value: T) -> None:
        with self._lock:
            self._table[key] = value
            if len(self._table) > self.entries:
                self._table.popitem(last=False)


class TextMemo(_Lru[T]):
    """``parse(text)`` results by (kind, exact text)."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        super().__init__(entries)

    def get(self, kind: Hashable, text: str, parse: Callable[[str], T]) -> T:
        key = (kind, text)
        value = self._get(key)
        if value is None:
            value = parse(text)  # raises for malformed text: nothing is remembered
            if len(text) <= MAX_MEMO_TEXT_CHARS:
                self._put(key, value)
        return value


class IdentityMemo(_Lru[tuple[Any, T]]):
    """``make(obj)`` results by the identity of ``obj`` (kept alive, so ids cannot recur)."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        super().__init__(entries)

    def get(self, obj: Any, make: Callable[[Any], T]) -> T:
        entry = self._get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        value = make(obj)
        self._put(id(obj), (obj, value))
        return value
