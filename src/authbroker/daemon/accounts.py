"""The broker's signed-in accounts, which one is the default, and how they are saved.

Since document version 3 the store (``records.py``) keeps one row per account: its wire object
plus ``{"lastSignIn": epoch s}`` (:meth:`AccountTable.entry`) and its msal partitions
(``msal_engine.py``), and one meta row :meth:`AccountTable.meta`::

    {"core": 3, "defaultAccount": "<homeAccountId>" | null, "defaultChosen": bool}

The single-file store's documents are read once, by :meth:`AccountTable.apply_document`:
version 2 ``{"core": 2, "msalCaches": {name: cache}, "accounts": [...], "defaultAccount",
"defaultChosen"}`` and version 1 (one ``"msalCache"`` for both kinds of token: it becomes the
plain partitions without their access tokens, as CAE and plain ones cannot be told apart).

The default account (the one ``account: null`` requests get) is the one chosen with
``SetDefaultAccount``, else the latest interactive sign-in, else the only account. A chosen
default stays the default when other accounts sign in; removing it makes the most recent
sign-in the default again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from authbroker import broker1
from authbroker.errors import BrokerProtocolError, BrokerStatusError

log = logging.getLogger(__name__)

DOCUMENT_VERSION = 3
#: Single-file document versions this code migrates (apply_document).
READABLE_VERSIONS = frozenset({1, 2})
#: Meta-row entries other parts own (``extras``): the registered device (``device.py``).
EXTRA_META = frozenset({"device"})


class TokenCaches(Protocol):
    """The part of the token engine an old document's caches go to (``TokenEngine``)."""

    def load_caches(self, states: Mapping[str, Any]) -> None: ...

    def load_legacy_cache(self, state: str | None) -> int: ...


def _recency(entry: Mapping[str, Any]) -> float:
    return -float(entry.get("lastSignIn", 0))


class AccountTable:
    """Accounts by homeAccountId (their wire objects plus ``lastSignIn``) and the default."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._default: str | None = None
        self._default_chosen = False  # chosen with SetDefaultAccount: sign-ins keep it
        #: Other parts' entries of the meta row (``"device"``: device.py's record), kept as read.
        self.extras: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, home_account_id: object) -> bool:
        return home_account_id in self._entries

    def entries(self) -> list[dict[str, Any]]:
        """The stored form of every account (wire object + ``lastSignIn``)."""
        return list(self._entries.values())

    # -- what the store keeps -----------------------------------------------------------------

    def load(self, meta: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]) -> None:
        """The state the record store read (its meta row and its account rows)."""
        for hid, entry in entries.items():
            self._add_entry(entry, hid)
        self._set_default(meta)
        self.extras = {k: v for k, v in meta.items() if k in EXTRA_META}

    def meta(self) -> dict[str, Any]:
        """The meta row: the default account and whether it was chosen."""
        return {"core": DOCUMENT_VERSION, "defaultAccount": self._default,
                "defaultChosen": self._default_chosen, **self.extras}

    def entry(self, home_account_id: str) -> dict[str, Any] | None:
        """An account's stored form (wire object + ``lastSignIn``), None if not signed in."""
        return self._entries.get(home_account_id)

    def _add_entry(self, entry: Mapping[str, Any], hid: str | None = None) -> None:
        try:
            account = broker1.Account.from_wire(dict(entry))
        except BrokerProtocolError as exc:
            log.error("skipping an unreadable account in the store: %s", exc)
            return
        if hid is None or hid == account.home_account_id:
            self._entries[account.home_account_id] = dict(
                entry, homeAccountId=account.home_account_id
            )

    def _set_default(self, meta: Mapping[str, Any]) -> None:
        default = meta.get("defaultAccount")
        self._default = default if default in self._entries else None
        self._default_chosen = bool(self._default and meta.get("defaultChosen"))

    def apply_document(self, doc: Mapping[str, Any], caches: TokenCaches) -> bool:
        """Load a single-file store document (version 1 or 2) into this table and ``caches``;
        whether it held anything to migrate."""
        version = doc.get("core", 2)
        if version not in READABLE_VERSIONS:
            log.error("the store holds an unknown document version; starting empty")
            return False
        try:
            if version == 1:
                dropped = caches.load_legacy_cache(doc.get("msalCache"))
                log.info("store document version 1 migrated (%d cached access token(s) "
                         "dropped)", dropped)
            else:
                states = doc.get("msalCaches")
                caches.load_caches(states if isinstance(states, dict) else {})
        except ValueError as exc:
            log.error("the store's token cache is unreadable (%s); starting with an empty one",
                      exc)
        for entry in doc.get("accounts") or []:
            if isinstance(entry, Mapping):
                self._add_entry(entry)
        self._set_default(doc)
        return bool(doc)

    # -- reading ------------------------------------------------------------------------------

    def listed(self) -> list[broker1.Account]:
        """Signed-in accounts, the default first, then the most recently signed-in.

        ``getAccounts`` lists every account whatever the request's client id, as brokers do:
        an account signed in by one app is offered to the others (each app still needs its own
        consent at the authority, and ``removeAccount`` forgets the account for every app).
        """
        ordered = sorted(
            self._entries.values(),
            key=lambda a: (a["homeAccountId"] != self._default, _recency(a)),
        )
        return [broker1.Account.from_wire(a) for a in ordered]

    @property
    def default(self) -> str | None:
        """The default account's homeAccountId (see the module docstring), or None."""
        if self._default in self._entries:
            return self._default
        if len(self._entries) == 1:
            return next(iter(self._entries))
        return None

    def account(self, home_account_id: str) -> broker1.Account:
        return broker1.Account.from_wire(self._entries[home_account_id])

    def find(self, request: broker1.SetDefaultAccountRequest) -> str:
        """The homeAccountId of the signed-in account a request names; BrokerStatusError if none."""
        if request.home_account_id:
            if request.home_account_id in self._entries:
                return request.home_account_id
            wanted = f"account {request.home_account_id}"
            found: list[str] = []
        else:
            wanted = request.username
            found = [hid for hid, a in self._entries.items()
                     if str(a.get("username", "")).lower() == request.username.lower()]
        if len(found) > 1:
            raise BrokerStatusError(
                broker1.Status.API_CONTRACT_VIOLATION,
                f"several signed-in accounts are named {wanted}; name one by homeAccountId",
                tag="core.default.ambiguous",
            )
        if not found:
            names = ", ".join(sorted(str(a.get("username")) for a in self._entries.values()))
            raise BrokerStatusError(
                broker1.Status.ACCOUNT_NOT_FOUND,
                f"{wanted} is not signed in to the broker (signed in: {names or 'nobody'})",
                tag="core.default.unknown",
            )
        return found[0]

    # -- changes ------------------------------------------------------------------------------

    def choose_default(self, home_account_id: str) -> None:
        """Make a signed-in account the default; it stays so until chosen otherwise or removed."""
        if home_account_id not in self._entries:
            raise BrokerStatusError(
                broker1.Status.ACCOUNT_NOT_FOUND,
                f"no signed-in account {home_account_id}",
                tag="core.default.unknown",
            )
        self._default = home_account_id
        self._default_chosen = True

    def signed_in(self, account: broker1.Account | None) -> None:
        """An interactive sign-in: the account is the latest, and the default unless one
        was chosen."""
        if account is None:
            return
        self._entries[account.home_account_id] = dict(account.to_wire(), lastSignIn=time.time())
        if not (self._default_chosen and self._default in self._entries):
            self._default = account.home_account_id
            self._default_chosen = False

    def seen(self, account: broker1.Account | None) -> None:
        """An account a silent call served that the table does not know (never signed in here)."""
        if account and account.home_account_id not in self._entries:
            self._entries[account.home_account_id] = dict(account.to_wire(), lastSignIn=0.0)

    def forget(self, home_account_id: str) -> bool:
        """Remove an account (the latest sign-in inherits a removed default); whether known."""
        known = self._entries.pop(home_account_id, None) is not None
        if self._default == home_account_id:
            rest = sorted(self._entries.values(), key=_recency)
            self._default = rest[0]["homeAccountId"] if rest else None
            self._default_chosen = False
        return known
