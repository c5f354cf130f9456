"""The token engine: msal applications over per-account, per-capability token partitions.

One ``msal.PublicClientApplication`` (broker disabled) per (client id, authority, client
capabilities); its token cache is a :class:`partitions.RoutingCache` that serves the partition
of the account being served, so a lookup, a refresh or a removal touches one account's tokens
(``partitions.py``). Each account has a partition per capability set (``"plain"``, ``"CP1"`` for
CAE): msal does not record capabilities on cached access tokens, so one partition would serve a
plain token to a CAE request and the other way round; PoP-bound access tokens
(:meth:`TokenEngine.serve_pop`) have a partition per capability set of their own. Refresh tokens
rotate (and authorities with reuse detection revoke a sign-in when a redeemed one is replayed),
so one account's silent calls take turns (a lock per account), and after a refresh or a sign-in
the account's other partitions get its new refresh tokens. An interactive sign-in runs on an app
of its own over a fresh cache (the same HTTP cache, so no second discovery request) that becomes
the account's partition once the answer names the account (:meth:`TokenEngine.adopt`).

An account's partitions are read from the store on first use (``loader``) and, once saved,
leave memory when more than ``resident.LOADED_ACCOUNTS`` accounts were used since
(``resident.py``); which accounts changed since their last snapshot is
:meth:`TokenEngine.changed`. Every method here blocks
(network, msal locks): the broker runs them in a thread executor, never on the event loop.

Where a request goes is ``routing.py``; how msal's answers become Broker1 results is
``results.py``. Errors leave as ``BrokerStatusError`` whose ``context`` never holds a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import msal
import requests

from authbroker import broker1, entra
from authbroker.daemon import results
from authbroker.daemon.audit import CACHE, FAMILY, REFRESH
from authbroker.daemon.partitions import (
    PLAIN,
    AccountTokens,
    Partition,
    RoutingCache,
    partition_name,
    split_by_account,
)
from authbroker.daemon.popkeys import PopKey
from authbroker.daemon.resident import Loader, ResidentAccounts
from authbroker.daemon.routing import Target, msal_scopes, resolve_authority, split_claims
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

PLAIN_CACHE = PLAIN
cache_name = partition_name
AppKey = tuple[str, str, tuple[str, ...]]
_RT = msal.TokenCache.CredentialType.REFRESH_TOKEN


class TokenEngine:
    """msal applications over per-account partitions. Thread-safe; blocks."""

    def __init__(
        self, configured_authority: str | None = None, *, http_client: Any = None
    ) -> None:
        self.configured_authority = configured_authority
        # msal's debug log prints authorization codes and PKCE verifiers in the clear.
        msal_log = logging.getLogger("msal")
        if msal_log.getEffectiveLevel() < logging.INFO:
            msal_log.setLevel(logging.INFO)
        #: The accounts whose partitions are in memory (a bounded LRU once there is a loader).
        self.resident = ResidentAccounts()
        # one HTTP session for every app (msal makes one per app otherwise: each sign-in's app
        # would bring its own connection pool and TLS context, freed but not given back)
        self._http_client = http_client if http_client is not None else _session()
        self._apps: dict[AppKey, tuple[msal.PublicClientApplication, RoutingCache]] = {}
        self._http_caches: dict[str, dict[Any, Any]] = {}  # per authority, shared by its apps
        self._lock = threading.Lock()

    # -- account state ------------------------------------------------------------------------

    @property
    def loader(self) -> Loader | None:
        """Reads an account's saved partitions (the store's); set, evicted accounts are
        dropped from memory and read again on their next use."""
        return self.resident.loader

    @loader.setter
    def loader(self, loader: Loader | None) -> None:
        self.resident.loader = loader

    def account_lock(self, home_account_id: str) -> AbstractContextManager[None]:
        """Held: the account's refreshes (in any partition) and the copying of its refresh
        tokens between partitions happen one at a time (refresh tokens rotate), and the
        account stays in memory."""
        return self.resident.hold(home_account_id)

    def tokens(self, home_account_id: str) -> AccountTokens:
        """The account's partitions, read from the store if not in memory. Hold its lock."""
        return self.resident.tokens(home_account_id)

    def partition(self, home_account_id: str, capabilities: tuple[str, ...] = ()) -> Partition:
        """The account's partition for these capabilities (tests look inside)."""
        with self.account_lock(home_account_id):
            return self.tokens(home_account_id).get(capabilities)

    @property
    def loaded_accounts(self) -> int:
        """How many accounts' partitions are in memory (read from the store or new)."""
        return len(self.resident)

    def changed(self) -> list[str]:
        """Accounts whose partitions changed since their last :meth:`snapshot` (only the
        accounts served since then are looked at, not every account)."""
        return self.resident.changed()

    def _touch(self, home_account_id: str) -> None:
        self.resident.touch(home_account_id)

    def snapshot(self, home_account_id: str) -> dict[str, str] | None:
        """The account's partitions as saved (None: not in memory, the store has them); the
        account stays in memory until :meth:`saved` names it."""
        with self.account_lock(home_account_id):
            return self.resident.snapshot(home_account_id)

    def saved(self, home_account_ids: Iterable[str]) -> None:
        """The commit of these accounts' snapshots landed: they may leave memory."""
        self.resident.saved(home_account_ids)

    def load_caches(self, states: Mapping[str, Any]) -> None:
        """Whole-store caches by capability-set name (the single-file store's document,
        version 2) split into per-account partitions; ValueError names an unreadable one."""
        bad = []
        for name, state in states.items():
            if not isinstance(state, str) or not state:
                continue
            try:
                parts = split_by_account(state)
            except ValueError:
                bad.append(name)
                continue
            for hid, part in parts.items():
                with self.account_lock(hid):
                    tokens = self.tokens(hid)
                    tokens.partitions[name] = part
                    tokens.changed = True
                    self._touch(hid)
        if bad:
            raise ValueError(f"unreadable token cache(s): {', '.join(bad)}")

    def load_legacy_cache(self, state: str | None) -> int:
        """A version-1 document's single cache becomes the plain partitions, minus its access
        tokens (some may be CAE ones: they cannot be told apart). Returns how many were dropped.
        """
        if not state:
            return 0
        self.load_caches({PLAIN: state})
        kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
        dropped = 0
        for hid in self.resident.loaded():  # all of them: not saved yet, so not dropped
            with self.account_lock(hid):
                plain = self.tokens(hid).get(())
                for entry in list(plain.search(kind)):
                    plain.remove_at(entry)
                    dropped += 1
        return dropped

    # -- applications -------------------------------------------------------------------------

    def target(self, auth: broker1.AuthParameters) -> Target:
        return resolve_authority(auth.authority, self.configured_authority)

    def _build(self, client_id: str, target: Target, capabilities: tuple[str, ...],
               cache: Any) -> msal.PublicClientApplication:
        with self._lock:
            http_cache = self._http_caches.setdefault(target.authority, {})
        try:
            return msal.PublicClientApplication(
                client_id,
                authority=target.authority,
                token_cache=cache,
                instance_discovery=target.instance_discovery,
                client_capabilities=list(capabilities) or None,
                http_client=self._http_client,
                http_cache=http_cache,
            )
        except (requests.exceptions.RequestException, ValueError) as exc:
            log.warning("authority %s unreachable: %s", target.authority, type(exc).__name__)
            raise results.unreachable(exc, target.authority, "engine.app") from None

    def routed_app(
        self, client_id: str, target: Target, capabilities: tuple[str, ...] = ()
    ) -> tuple[msal.PublicClientApplication, RoutingCache]:
        """The app for silent calls and the routing cache it sees its tokens through."""
        key = (client_id, target.authority, capabilities)
        with self._lock:
            found = self._apps.get(key)
        if found is not None:
            return found
        router = RoutingCache()
        app = self._build(client_id, target, capabilities, router)
        with self._lock:
            return self._apps.setdefault(key, (app, router))

    def app(
        self, client_id: str, target: Target, capabilities: tuple[str, ...] = ()
    ) -> msal.PublicClientApplication:
        """An app for one interactive sign-in, over a fresh cache of its own (see adopt)."""
        self.routed_app(client_id, target, capabilities)  # discovery once, cached per authority
        return self._build(client_id, target, capabilities, msal.SerializableTokenCache())

    def adopt(self, app: msal.PublicClientApplication, capabilities: tuple[str, ...],
              home_account_id: str, environment: str) -> None:
        """A finished sign-in's cache becomes the account's partition for ``capabilities``;
        the account's other partitions get its new refresh token."""
        with self.account_lock(home_account_id):
            tokens = self.tokens(home_account_id)
            tokens.adopt(app.token_cache, capabilities)
            tokens.spread(capabilities, environment)
            self._touch(home_account_id)

    def forget_http_cache(self) -> None:
        """Drop msal's memoised HTTP answers (it replays a 400 for 60 s) so a retry retries."""
        with self._lock:
            for cache in self._http_caches.values():
                cache.clear()

    # -- silent -------------------------------------------------------------------------------

    def acquire_silent(self, auth: broker1.AuthParameters,
                       home_account_id: str) -> broker1.TokenResult:
        """A cached access token or a refresh through msal; status 2 if neither."""
        return self.serve_silent(auth, home_account_id)[0]

    def serve_silent(self, auth: broker1.AuthParameters,
                     home_account_id: str) -> tuple[broker1.TokenResult, str]:
        """:meth:`acquire_silent` and how it served: ``"cache"`` (msal's), ``"refresh"``
        (the client's own refresh token) or ``"family"`` (another client's: FOCI)."""
        result, served, _key = self._serve(auth, home_account_id, pop=False)
        return result, served

    def serve_pop(self, auth: broker1.AuthParameters,
                  home_account_id: str) -> tuple[broker1.TokenResult, str, PopKey]:
        """:meth:`serve_silent` for a PoP request: an access token bound to the account's PoP
        key (made on first use), from the account's PoP partition, and that key. The caller
        signs the SHR."""
        result, served, key = self._serve(auth, home_account_id, pop=True)
        assert key is not None
        return result, served, key

    def _serve(self, auth: broker1.AuthParameters, home_account_id: str, *,
               pop: bool) -> tuple[broker1.TokenResult, str, PopKey | None]:
        target = self.target(auth)
        claims = split_claims(auth.decoded_claims)
        app, router = self.routed_app(auth.client_id, target, claims.capabilities)
        with self.account_lock(home_account_id):
            tokens = self.tokens(home_account_id)
            self._touch(home_account_id)  # whatever happens below (msal may drop an RT)
            own = {"client_id": auth.client_id, "home_account_id": home_account_id}
            had_own = any(p.holds(_RT, own) for p in tokens.partitions.values())
            with router.serving(tokens.get(claims.capabilities, pop)):
                result, key = self._silent(app, auth, claims, target, tokens, home_account_id,
                                           pop)
                served = CACHE if result.get("token_source") == "cache" else (
                    REFRESH if had_own else FAMILY)
                if "access_token" in result and served != CACHE:
                    tokens.spread(claims.capabilities, target.environment, pop)  # rotated
                return self.token_result(result, auth.requested_scopes, app, target,
                                         home_account_id), served, key

    def _silent(
        self, app: msal.PublicClientApplication, auth: broker1.AuthParameters,
        claims: entra.Claims, target: Target, tokens: AccountTokens, home_account_id: str,
        pop: bool,
    ) -> tuple[dict[str, Any], PopKey | None]:
        account = _msal_account(app, home_account_id)
        if account is None and tokens.share(claims.capabilities, target.environment, pop):
            log.info("account %s: refresh token shared with the %s partition",
                     home_account_id, partition_name(claims.capabilities, pop))
            account = _msal_account(app, home_account_id)
        if account is None:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                f"no signed-in account {home_account_id} at {target.environment}; sign in",
                tag="engine.silent.account",
            )
        key = tokens.pop_key() if pop else None  # a known account only: made on first use
        extra = {"data": key.token_request_data()} if key is not None else {}
        force = auth.force_refresh or bool(auth.access_token_to_renew)
        try:
            result = app.acquire_token_silent_with_error(
                msal_scopes(auth.requested_scopes),
                account,
                force_refresh=force,
                claims_challenge=claims.challenge,
                **extra,
            )
        except requests.exceptions.RequestException as exc:
            self.forget_http_cache()
            raise results.unreachable(exc, target.authority, "engine.silent.network") from None
        except ValueError as exc:  # msal refusing the request itself (e.g. a malformed scope)
            raise BrokerStatusError(
                broker1.Status.UNEXPECTED, f"msal refused the request: {exc}"[:500],
                tag="engine.silent.refused",
            ) from None
        if not result:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                f"no refresh token for client {auth.client_id} and this account: this app "
                f"needs its own sign-in (authbroker login --client-id {auth.client_id})",
                tag="engine.silent.no_rt",
            )
        return dict(result), key

    def token_result(self, result: Mapping[str, Any], *context: Any) -> broker1.TokenResult:
        """:func:`results.token_result` (same arguments), forgetting msal's memoised HTTP
        answers first when ``result`` is an error (msal replays a failed answer for 60 s)."""
        if "error" in result:
            self.forget_http_cache()
        return results.token_result(result, *context)

    # -- accounts -----------------------------------------------------------------------------

    def remove_account(self, home_account_id: str) -> int:
        """Forget the account's partitions (its tokens only); returns how many entries."""
        with self.account_lock(home_account_id):
            removed = self.tokens(home_account_id).clear()
            self._touch(home_account_id)
            return removed

    def pop_key(self, home_account_id: str) -> PopKey:
        """The account's PoP key, made on first use (only for a signed-in account)."""
        with self.account_lock(home_account_id):
            tokens = self.tokens(home_account_id)
            self._touch(home_account_id)
            return tokens.pop_key()

    def has_refresh_token(self, home_account_id: str) -> bool:
        """Whether any of the account's partitions holds a refresh token."""
        with self.account_lock(home_account_id):
            return self.tokens(home_account_id).has_refresh_token()


def _session() -> requests.Session:
    """An HTTP session as msal builds its own (a minimal retry), shared by the engine's apps."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _msal_account(app: msal.PublicClientApplication,
                  home_account_id: str) -> dict[str, Any] | None:
    """The account as msal knows it in the partition being served (a handful of entries)."""
    return next(
        (a for a in app.get_accounts() if a.get("home_account_id") == home_account_id), None
    )
