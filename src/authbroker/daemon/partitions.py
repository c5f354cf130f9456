"""One account's msal token caches, one partition per capability set, and the cache msal apps see.

msal's ``TokenCache`` is one flat dict that every lookup scans, so the engine keeps one small
:class:`Partition` per (account, capability set) instead of one cache per capability set for
everyone. An msal app is still one per (client id, authority, capabilities) — building one
fetches the authority's OpenID configuration — and its ``token_cache`` is a
:class:`RoutingCache`: a stand-in that forwards every call to the partition the current
thread serves (:meth:`RoutingCache.serving`), set under the account's lock. A thread that
serves no partition gets an error, never another account's tokens.

A partition holds all of one account's client ids (so msal finds a family refresh token of
another client id there: FOCI) and never another account's. Refresh tokens are not
capability-bound: :meth:`AccountTokens.share` brings an account's refresh tokens, account and id
tokens (never an access token) into a capability partition that has none, and
:meth:`AccountTokens.spread` hands a rotated refresh token on to the account's other partitions.

PoP-bound access tokens live apart, in a partition per capability set of their own
(``"#pop:" + name``): msal keys an access token by account, client, realm and scopes only (not
by its ``key_id``), and its bearer lookup does not filter on ``key_id``, so in a shared
partition a PoP token would replace a bearer one and be served to a bearer request. Refresh
tokens are shared and spread between bearer and PoP partitions alike. The account's PoP key
(PEM, ``popkeys.py``) travels in the account's snapshot under :data:`POP_KEY`, its Primary
Refresh Token (``prt.py``) under :data:`PRT`; ``removeAccount`` drops both with the tokens.
Names starting with ``#`` are reserved: a capability set whose name would start with one gets a
second ``#`` (``"##…"``), so it can never be taken for a reserved name.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msal

from authbroker.daemon.popkeys import PopKey

PLAIN = "plain"
#: The snapshot entry holding the account's PoP key (PEM), never a partition's name.
POP_KEY = "#pop-key"
#: The snapshot entry holding the account's Primary Refresh Token record (``prt.PrtState``).
PRT = "#prt"
#: What a PoP partition's name starts with (then the capability set's name).
POP_PREFIX = "#pop:"
_RESERVED = "#"
_KIND = msal.TokenCache.CredentialType
#: What may be copied between capability partitions (never an access token).
_SHARED_KINDS = (_KIND.ACCOUNT, _KIND.ID_TOKEN, _KIND.REFRESH_TOKEN)


def partition_name(capabilities: tuple[str, ...], pop: bool = False) -> str:
    """The name of the partition for requests with these client capabilities (``pop``: for
    their PoP-bound access tokens)."""
    name = ",".join(capabilities) or PLAIN
    if name.startswith(_RESERVED):
        name = _RESERVED + name  # "##…": never a reserved name
    return POP_PREFIX + name if pop else name


class Partition(msal.SerializableTokenCache):  # type: ignore[misc]
    """msal's serializable cache, written compactly (msal indents its JSON by 4), and freed as
    soon as it is dropped."""

    def __init__(self) -> None:
        super().__init__()
        # msal's key makers are lambdas closing over ``self`` (for ``self.CredentialType``):
        # a reference cycle, so a dropped partition and all its tokens would wait for the
        # cyclic collector's oldest generation, which seldom runs. The class answers the same.
        for maker in self.key_makers.values():
            code, cells = getattr(maker, "__code__", None), getattr(maker, "__closure__", None)
            for name, cell in zip(code.co_freevars if code else (), cells or (), strict=False):
                if name == "self" and cell.cell_contents is self:
                    cell.cell_contents = type(self)

    def compact(self) -> str:
        with self._lock:
            self.has_state_changed = False
            return json.dumps(self._cache, separators=(",", ":"))

    def holds(self, kind: str, query: dict[str, str]) -> bool:
        return any(True for _ in self.search(kind, query=query))


def _delegated(name: str) -> Callable[..., Any]:
    """A method that calls ``name`` on the partition being served at the time of the call."""

    def method(self: RoutingCache, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._served(), name)(*args, **kwargs)

    method.__name__ = name
    return method


class RoutingCache:
    """An msal app's ``token_cache``: every call goes to the partition this thread serves."""

    CredentialType = msal.TokenCache.CredentialType

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def serving(self, partition: Partition) -> Iterator[Partition]:
        previous = getattr(self._local, "partition", None)
        self._local.partition = partition
        try:
            yield partition
        finally:
            self._local.partition = previous

    def _served(self) -> Partition:
        partition = getattr(self._local, "partition", None)
        if not isinstance(partition, Partition):
            raise RuntimeError("no account partition is being served on this thread")
        return partition

    def __getattr__(self, name: str) -> Any:
        return getattr(self._served(), name)

    # msal keeps bound methods of its cache (e.g. ``on_removing_rt=cache.remove_rt``) from
    # the app's construction on: these resolve the partition when called, not when bound.
    search = _delegated("search")
    add = _delegated("add")
    modify = _delegated("modify")
    remove_rt = _delegated("remove_rt")
    update_rt = _delegated("update_rt")
    remove_at = _delegated("remove_at")
    remove_idt = _delegated("remove_idt")
    remove_account = _delegated("remove_account")


class AccountTokens:
    """One account's partitions by capability-set name. The caller holds the account's lock."""

    def __init__(self, states: Mapping[str, str] | None = None) -> None:
        self.partitions: dict[str, Partition] = {}
        self.changed = False  # set by share/remove; the partitions track their own changes
        self._pop_pem: str | None = None  # the account's PoP key (saved with the partitions)
        self._pop_key: PopKey | None = None  # the same, parsed on first use
        #: The account's PRT record (``prt_calls.py``; saved, sealed, with the partitions).
        self.prt_record: str | None = None
        for name, state in (states or {}).items():
            if name == POP_KEY:
                self._pop_pem = state
                continue
            if name == PRT:
                self.prt_record = state
                continue
            partition = Partition()
            partition.deserialize(state)  # ValueError: the caller decides
            self.partitions[name] = partition

    def __repr__(self) -> str:
        return f"AccountTokens(partitions={sorted(self.partitions)}, pop_key={self.has_pop_key})"

    def get(self, capabilities: tuple[str, ...], pop: bool = False) -> Partition:
        return self.partitions.setdefault(partition_name(capabilities, pop), Partition())

    @property
    def has_pop_key(self) -> bool:
        return self._pop_pem is not None

    def pop_key(self) -> PopKey:
        """The account's PoP key, made (and the account marked changed) on first use. A saved
        key that does not parse is replaced by a new one (its tokens were bound to it: the
        PoP partitions are emptied)."""
        if self._pop_key is None and self._pop_pem is not None:
            try:
                self._pop_key = PopKey.from_pem(self._pop_pem)
            except ValueError:
                self._pop_pem = None
                for name in [n for n in self.partitions if n.startswith(POP_PREFIX)]:
                    del self.partitions[name]
        if self._pop_key is None:
            self._pop_key = PopKey.new()
            self._pop_pem = self._pop_key.to_pem()
            self.changed = True
        return self._pop_key

    @property
    def has_changed(self) -> bool:
        return self.changed or any(p.has_state_changed for p in self.partitions.values())

    def snapshot(self) -> dict[str, str]:
        """Every non-empty partition, serialized (and the change marks cleared)."""
        self.changed = False
        states = {n: p.compact() for n, p in self.partitions.items() if p._cache}
        if states and self._pop_pem is not None:  # an account without tokens keeps no key
            states[POP_KEY] = self._pop_pem
        if self.prt_record is not None:
            states[PRT] = self.prt_record
        return states

    def keep_prt(self, record: str | None) -> None:
        """Keep (None: drop) the account's PRT record; saved with the next snapshot."""
        if record != self.prt_record:
            self.prt_record = record
            self.changed = True

    def has_refresh_token(self) -> bool:
        return any(p.holds(_KIND.REFRESH_TOKEN, {}) for p in self.partitions.values())

    def adopt(self, landing: msal.TokenCache, capabilities: tuple[str, ...]) -> None:
        """A sign-in's fresh cache joins the partition for ``capabilities`` (its refresh
        tokens replace the partition's, which the sign-in made stale for that client id)."""
        target = self.get(capabilities)
        for kind in (_KIND.REFRESH_TOKEN, _KIND.ACCESS_TOKEN, _KIND.ID_TOKEN, _KIND.ACCOUNT,
                     _KIND.APP_METADATA):
            for entry in list(landing.search(kind)):
                target.modify(kind, entry, entry)
        self.changed = True

    def share(self, capabilities: tuple[str, ...], environment: str, pop: bool = False) -> bool:
        """Bring the account into the partition for ``capabilities`` (``pop``: its PoP one)
        from another one that has a refresh token; whether there was one."""
        name = partition_name(capabilities, pop)
        query = {"environment": environment}
        for other_name, source in list(self.partitions.items()):
            if other_name != name and source.holds(_KIND.REFRESH_TOKEN, query):
                _copy(source, self.get(capabilities, pop), query)
                self.changed = True
                return True
        return False

    def spread(self, capabilities: tuple[str, ...], environment: str, pop: bool = False) -> None:
        """After a refresh or a sign-in in the partition for ``capabilities`` (``pop``: its
        PoP one): the other partitions that hold refresh tokens get its current ones (they
        rotate)."""
        name = partition_name(capabilities, pop)
        query = {"environment": environment}
        source = self.partitions.get(name)
        if source is None or not source.holds(_KIND.REFRESH_TOKEN, query):
            return
        for other_name, other in list(self.partitions.items()):
            if other_name != name and other.holds(_KIND.REFRESH_TOKEN, query):
                _copy(source, other, query)
                self.changed = True

    def clear(self) -> int:
        """Forget every token and the PoP key; how many entries there were."""
        count = sum(sum(len(v) for v in p._cache.values()) for p in self.partitions.values())
        self.partitions.clear()
        self._pop_pem = self._pop_key = None
        self.prt_record = None  # removeAccount drops the PRT with the tokens
        self.changed = True
        return count


def _copy(source: Partition, target: Partition, query: dict[str, str]) -> None:
    """Make ``target``'s refresh tokens ``source``'s (a replaced refresh token must never be
    replayed), and copy the account and id tokens. Never an access token."""
    for entry in list(target.search(_KIND.REFRESH_TOKEN, query=query)):
        target.remove_rt(entry)
    for kind in _SHARED_KINDS:
        for entry in list(source.search(kind, query=query)):
            target.modify(kind, entry, entry)
    for meta in list(source.search(_KIND.APP_METADATA, query=query)):
        target.modify(_KIND.APP_METADATA, meta, meta)


def split_by_account(state: str) -> dict[str, Partition]:
    """A whole-store msal cache (the single-file store's) split into partitions by account;
    app metadata (per client id, no account) goes to every account. ValueError if unreadable."""
    whole = msal.SerializableTokenCache()
    whole.deserialize(state)
    parts: dict[str, Partition] = {}
    for kind in (_KIND.ACCOUNT, _KIND.REFRESH_TOKEN, _KIND.ACCESS_TOKEN, _KIND.ID_TOKEN):
        for entry in whole.search(kind):
            hid = entry.get("home_account_id")
            if hid:
                parts.setdefault(hid, Partition()).modify(kind, entry, entry)
    for meta in list(whole.search(_KIND.APP_METADATA)):
        for part in parts.values():
            part.modify(_KIND.APP_METADATA, meta, meta)
    return parts
