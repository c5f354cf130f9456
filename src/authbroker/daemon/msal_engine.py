"""The token engine: msal applications over one token cache per client-capability set.

One ``msal.PublicClientApplication`` (broker disabled) per (client id, authority, client
capabilities). Applications with the same client capabilities share one
``msal.SerializableTokenCache``; each capability set has its own (``"plain"`` for none,
``"CP1"`` for CAE), as azure-identity keeps a separate cache for CAE: msal does not record
capabilities on cached access tokens, so one cache would serve a plain token (no ``xms_cc``)
to a CAE request and the other way round. Refresh tokens are not capability-bound: when a
request's cache does not know the account yet, its account, id token and refresh token (never
an access token) are copied in from another cache, and msal redeems the refresh token with the
request's capabilities. Refresh tokens rotate (and authorities with reuse detection revoke a
sign-in when a redeemed one is replayed), so one account's silent calls take turns (a lock per
account, whatever the cache), and after a refresh or a sign-in the other caches that know the
account get its new refresh tokens. The broker serializes every cache into the store document
(``accounts.py``). Every method here blocks (network, msal locks): the broker runs them in a
thread executor, never on the event loop.

Where a request goes is ``routing.py``; how msal's answers become Broker1 results is
``results.py``. Errors leave as ``BrokerStatusError`` whose ``context`` never holds a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import msal
import requests

from authbroker import broker1, entra
from authbroker.daemon import results
from authbroker.daemon.routing import Target, msal_scopes, resolve_authority, split_claims
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

PLAIN_CACHE = "plain"
#: What may be copied between caches of different capabilities (never an access token).
_SHARED_KINDS = (
    msal.TokenCache.CredentialType.ACCOUNT,
    msal.TokenCache.CredentialType.ID_TOKEN,
    msal.TokenCache.CredentialType.REFRESH_TOKEN,
)


def cache_name(capabilities: tuple[str, ...]) -> str:
    """The name of the cache for requests with these client capabilities."""
    return ",".join(capabilities) or PLAIN_CACHE


class TokenEngine:
    """msal applications over one serializable cache per capability set. Thread-safe; blocks."""

    def __init__(
        self, configured_authority: str | None = None, *, http_client: Any = None
    ) -> None:
        self.configured_authority = configured_authority
        # msal's debug log prints authorization codes and PKCE verifiers in the clear.
        msal_log = logging.getLogger("msal")
        if msal_log.getEffectiveLevel() < logging.INFO:
            msal_log.setLevel(logging.INFO)
        self.caches: dict[str, msal.SerializableTokenCache] = {
            PLAIN_CACHE: msal.SerializableTokenCache()
        }
        self._http_client = http_client
        self._apps: dict[tuple[str, str, tuple[str, ...]], msal.PublicClientApplication] = {}
        self._http_caches: dict[tuple[str, str, tuple[str, ...]], dict[Any, Any]] = {}
        self._lock = threading.Lock()
        #: Per account: refresh tokens rotate, so one account's refreshes (in any cache) and
        #: the copying of its refresh tokens between caches happen one at a time.
        self._account_locks: dict[str, threading.RLock] = {}

    # -- cache state --------------------------------------------------------------------------

    @property
    def cache(self) -> msal.SerializableTokenCache:
        """The cache of requests without client capabilities."""
        return self.caches[PLAIN_CACHE]

    def cache_for(self, capabilities: tuple[str, ...]) -> msal.SerializableTokenCache:
        name = cache_name(capabilities)
        with self._lock:
            return self.caches.setdefault(name, msal.SerializableTokenCache())

    def load_caches(self, states: Mapping[str, Any]) -> None:
        """Restore the caches by name; ValueError names an unreadable one (the rest load)."""
        bad = []
        for name, state in states.items():
            if not isinstance(state, str) or not state:
                continue
            cache = msal.SerializableTokenCache()
            try:
                cache.deserialize(state)
            except ValueError:
                bad.append(name)
                continue
            with self._lock:
                self.caches[name] = cache
        if bad:
            raise ValueError(f"unreadable token cache(s): {', '.join(bad)}")

    def load_legacy_cache(self, state: str | None) -> int:
        """A single cache of the old store format becomes the plain cache, minus its access
        tokens (some may be CAE ones: they cannot be told apart). Returns how many were dropped.
        """
        if not state:
            return 0
        self.cache.deserialize(state)
        kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
        dropped = list(self.cache.search(kind))
        for entry in dropped:
            self.cache.remove_at(entry)
        return len(dropped)

    @property
    def has_state_changed(self) -> bool:
        with self._lock:
            caches = list(self.caches.values())
        return any(c.has_state_changed for c in caches)

    def serialize_caches(self) -> dict[str, str]:
        with self._lock:
            return {name: cache.serialize() for name, cache in self.caches.items()}

    # -- applications -------------------------------------------------------------------------

    def target(self, auth: broker1.AuthParameters) -> Target:
        return resolve_authority(auth.authority, self.configured_authority)

    def app(
        self, client_id: str, target: Target, capabilities: tuple[str, ...] = ()
    ) -> msal.PublicClientApplication:
        key = (client_id, target.authority, capabilities)
        with self._lock:
            app = self._apps.get(key)
        if app is not None:
            return app
        http_cache: dict[Any, Any] = {}
        try:
            app = msal.PublicClientApplication(
                client_id,
                authority=target.authority,
                token_cache=self.cache_for(capabilities),
                instance_discovery=target.instance_discovery,
                client_capabilities=list(capabilities) or None,
                http_client=self._http_client,
                http_cache=http_cache,
            )
        except (requests.exceptions.RequestException, ValueError) as exc:
            log.warning("authority %s unreachable: %s", target.authority, type(exc).__name__)
            raise results.unreachable(exc, target.authority, "engine.app") from None
        with self._lock:
            app = self._apps.setdefault(key, app)
            self._http_caches.setdefault(key, http_cache)
        return app

    def forget_http_cache(self) -> None:
        """Drop msal's memoised HTTP answers (it replays a 400 for 60 s) so a retry retries."""
        with self._lock:
            for cache in self._http_caches.values():
                cache.clear()

    def msal_account(
        self, app: msal.PublicClientApplication, home_account_id: str
    ) -> dict[str, Any] | None:
        return next(
            (a for a in app.get_accounts() if a.get("home_account_id") == home_account_id), None
        )

    # -- silent -------------------------------------------------------------------------------

    def account_lock(self, home_account_id: str) -> threading.RLock:
        with self._lock:
            return self._account_locks.setdefault(home_account_id, threading.RLock())

    def acquire_silent(self, auth: broker1.AuthParameters,
                       home_account_id: str) -> broker1.TokenResult:
        """A cached access token or a refresh through msal; status 2 if neither."""
        target = self.target(auth)
        claims = split_claims(auth.decoded_claims)
        app = self.app(auth.client_id, target, claims.capabilities)
        with self.account_lock(home_account_id):
            result = self._silent(app, auth, claims, target, home_account_id)
            if "access_token" in result and result.get("token_source") != "cache":  # rotated
                self.spread_account(claims.capabilities, home_account_id, target.environment)
        return self.token_result(result, auth.requested_scopes, app, target, home_account_id)

    def _silent(
        self, app: msal.PublicClientApplication, auth: broker1.AuthParameters,
        claims: entra.Claims, target: Target, home_account_id: str,
    ) -> dict[str, Any]:
        account = self.msal_account(app, home_account_id)
        if account is None and self._share_account(
            claims.capabilities, home_account_id, target.environment
        ):
            account = self.msal_account(app, home_account_id)
        if account is None:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                f"no signed-in account {home_account_id} at {target.environment}; sign in",
                tag="engine.silent.account",
            )
        force = auth.force_refresh or bool(auth.access_token_to_renew)
        try:
            result = app.acquire_token_silent_with_error(
                msal_scopes(auth.requested_scopes),
                account,
                force_refresh=force,
                claims_challenge=claims.challenge,
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
                f"no refresh token for client {auth.client_id} and this account; sign in",
                tag="engine.silent.no_rt",
            )
        return dict(result)

    # -- results and sharing ------------------------------------------------------------------

    def token_result(self, result: Mapping[str, Any], *context: Any) -> broker1.TokenResult:
        """:func:`results.token_result` (same arguments), forgetting msal's memoised HTTP
        answers first when ``result`` is an error (msal replays a failed answer for 60 s)."""
        if "error" in result:
            self.forget_http_cache()
        return results.token_result(result, *context)

    @staticmethod
    def _copy_account(
        source: msal.SerializableTokenCache, target: msal.SerializableTokenCache,
        query: dict[str, str],
    ) -> int:
        """Make ``target``'s refresh tokens of an account ``source``'s (a replaced refresh
        token must never be replayed), and copy its account and id tokens. Never an access
        token. Returns how many entries were copied."""
        refresh = msal.TokenCache.CredentialType.REFRESH_TOKEN
        for entry in list(target.search(refresh, query=query)):
            target.remove_rt(entry)
        copied = 0
        for kind in _SHARED_KINDS:
            for entry in list(source.search(kind, query=query)):
                target.modify(kind, entry, entry)
                copied += 1
        metadata = msal.TokenCache.CredentialType.APP_METADATA
        for meta in list(source.search(metadata, query={"environment": query["environment"]})):
            target.modify(metadata, meta, meta)
        return copied

    def _other_caches(self, capabilities: tuple[str, ...]) -> list[msal.SerializableTokenCache]:
        with self._lock:
            return [c for n, c in self.caches.items() if n != cache_name(capabilities)]

    def _share_account(
        self, capabilities: tuple[str, ...], home_account_id: str, environment: str
    ) -> bool:
        """Bring an account the cache for ``capabilities`` does not know in from another cache
        (its refresh tokens, account and id tokens); whether there was one to bring."""
        query = {"home_account_id": home_account_id, "environment": environment}
        refresh = msal.TokenCache.CredentialType.REFRESH_TOKEN
        with self.account_lock(home_account_id):
            for source in self._other_caches(capabilities):
                if any(True for _ in source.search(refresh, query=query)):
                    self._copy_account(source, self.cache_for(capabilities), query)
                    log.info("account %s: refresh token shared with the %s cache",
                             home_account_id, cache_name(capabilities))
                    return True
        return False

    def spread_account(
        self, capabilities: tuple[str, ...], home_account_id: str, environment: str
    ) -> None:
        """After a refresh or a sign-in in the cache for ``capabilities``: the other caches
        that know the account get its current refresh tokens (they rotate)."""
        query = {"home_account_id": home_account_id, "environment": environment}
        refresh = msal.TokenCache.CredentialType.REFRESH_TOKEN
        source = self.cache_for(capabilities)
        with self.account_lock(home_account_id):
            if not any(True for _ in source.search(refresh, query=query)):
                return
            for other in self._other_caches(capabilities):
                if any(True for _ in other.search(refresh, query=query)):
                    self._copy_account(source, other, query)

    # -- accounts -----------------------------------------------------------------------------

    def remove_account(self, home_account_id: str) -> int:
        """Forget an account's refresh, access and id tokens in every cache; returns the count."""
        with self._lock:
            caches = list(self.caches.values())
        removed = 0
        for cache in caches:
            kinds = [
                (msal.TokenCache.CredentialType.REFRESH_TOKEN, cache.remove_rt),
                (msal.TokenCache.CredentialType.ACCESS_TOKEN, cache.remove_at),
                (msal.TokenCache.CredentialType.ID_TOKEN, cache.remove_idt),
                (msal.TokenCache.CredentialType.ACCOUNT, cache.remove_account),
            ]
            query = {"home_account_id": home_account_id}
            for kind, remove in kinds:
                for entry in list(cache.search(kind, query=query)):
                    remove(entry)
                    removed += 1
        return removed

    def has_refresh_token(self, home_account_id: str) -> bool:
        """Whether any cache holds a refresh token of the account."""
        query = {"home_account_id": home_account_id}
        kind = msal.TokenCache.CredentialType.REFRESH_TOKEN
        with self._lock:
            caches = list(self.caches.values())
        return any(any(True for _ in c.search(kind, query=query)) for c in caches)
