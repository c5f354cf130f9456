"""The token engine: msal does all talking to the authority.

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
account get its new refresh tokens. The core serializes every cache into the store document.
Every method here blocks (network, msal locks): the core runs them in a thread executor, never
on the event loop.

Authority resolution (``resolve_authority``): msal hands pymsalruntime the authority without its
port, so a request whose authority has the configured authority's host and no port, or no
authority at all, goes to the configured authority (``AUTHBROKER_AUTHORITY`` / config file), with
instance discovery off and the request's tenant path segment kept. Other authorities go as given;
instance discovery stays on only for Microsoft's own hosts.

Errors leave as ``BrokerStatusError`` whose ``context`` never holds a token.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS
from msal.oauth2cli.oidc import decode_part

from authbroker import broker1
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_TENANT = "organizations"
#: msal adds these itself and refuses them in a request.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
#: Keys of additionalQueryParametersForAuthorization meant for the client library, not the IdP.
TELEMETRY_QUERY_KEYS = frozenset({
    "msal_client_sku", "msal_client_ver", "x-client-xtra-sku", "msal_gui_thread",
    "validateAuthority",
})
#: Errors after which only a person signing in can help.
INTERACTION_ERRORS = frozenset(
    {"invalid_grant", "interaction_required", "login_required", "consent_required"}
)
AUTHORITY_SETTING = "AUTHBROKER_AUTHORITY"
_AADSTS = re.compile(r"AADSTS(\d+)")
# msal raises RedirectUriError when a broker's error text names these codes; the redirect URI
# in question is the daemon's, not the app's, so the text spells them differently.
_REDIRECT_CODES = re.compile(r"AADSTS(50011|7000218)")
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


@dataclass(frozen=True)
class Target:
    """Where a request goes: the authority URL msal gets, and whether to run instance discovery."""

    authority: str  # https://host[:port]/tenant
    instance_discovery: bool

    @property
    def environment(self) -> str:
        """The host as msal records it in the cache (lower case, no port)."""
        return (urlsplit(self.authority).hostname or "").lower()


def _split_authority(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise BrokerStatusError(
            broker1.Status.INCORRECT_CONFIGURATION,
            f"the authority {url!r} is not an https URL",
            tag="engine.authority",
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    tenant = parts.path.strip("/").split("/")[0]
    return parts.hostname.lower(), parts.netloc, port, tenant


@functools.lru_cache(maxsize=256)  # pure; every silent call asks (the daemon's hot path)
def resolve_authority(requested: str, configured: str | None) -> Target:
    """The authority a request really goes to (see the module docstring)."""
    if configured:
        c_host, c_netloc, _c_port, c_tenant = _split_authority(configured)
        if not requested:
            return Target(f"https://{c_netloc}/{c_tenant or DEFAULT_TENANT}", False)
        host, netloc, port, tenant = _split_authority(requested)
        if host == c_host and port is None:
            return Target(f"https://{c_netloc}/{tenant or c_tenant or DEFAULT_TENANT}", False)
    elif not requested:
        return Target(f"{DEFAULT_AUTHORITY_HOST}/{DEFAULT_TENANT}", True)
    host, netloc, port, tenant = _split_authority(requested)
    discovery = host in WELL_KNOWN_AUTHORITY_HOSTS
    return Target(f"https://{netloc}/{tenant or DEFAULT_TENANT}", discovery)


@dataclass(frozen=True)
class Claims:
    """A request's ``decodedClaims`` split into client capabilities and a real challenge."""

    capabilities: tuple[str, ...] = ()
    challenge: str | None = None


@functools.lru_cache(maxsize=256)  # pure; Claims is frozen
def split_claims(decoded: str) -> Claims:
    """``xms_cc`` becomes the app's capabilities (CP1); anything else is a claims challenge."""
    if not decoded.strip():
        return Claims()
    try:
        claims = json.loads(decoded)
    except ValueError:
        raise BrokerStatusError(
            broker1.Status.API_CONTRACT_VIOLATION, "decodedClaims is not JSON", tag="engine.claims"
        ) from None
    if not isinstance(claims, dict):
        return Claims(challenge=decoded)
    capabilities: tuple[str, ...] = ()
    access = claims.get("access_token")
    if isinstance(access, dict) and isinstance(access.get("xms_cc"), dict):
        values = access["xms_cc"].get("values") or []
        capabilities = tuple(sorted(str(v) for v in values))
        access = {k: v for k, v in access.items() if k != "xms_cc"}
        claims = dict(claims, access_token=access) if access else {
            k: v for k, v in claims.items() if k != "access_token"
        }
    return Claims(capabilities, json.dumps(claims) if claims else None)


def msal_scopes(scopes: tuple[str, ...]) -> list[str]:
    return [s for s in scopes if s.lower() not in RESERVED_SCOPES]


def authority_query(auth: broker1.AuthParameters) -> dict[str, str]:
    """Query parameters that travel to the authority (e.g. the MSA passthrough marker)."""
    return {k: v for k, v in auth.extra_query.items() if k not in TELEMETRY_QUERY_KEYS}


def decode_claims(id_token: str) -> dict[str, Any]:
    """The id_token's payload, decoded as msal does (msal does not check signatures either)."""
    try:
        claims = json.loads(decode_part(id_token.split(".")[1]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def account_from(id_claims: Mapping[str, Any], client_info: str,
                 environment: str) -> broker1.Account:
    uid, utid = broker1.decode_client_info(client_info)
    name = str(id_claims.get("name") or "")
    given = str(id_claims.get("given_name") or (name.split(" ", 1)[0] if name else ""))
    family = str(
        id_claims.get("family_name") or (name.split(" ", 1)[1] if " " in name else "")
    )
    username = str(
        id_claims.get("preferred_username") or id_claims.get("upn") or id_claims.get("email") or ""
    )
    return broker1.Account(
        home_account_id=f"{uid}.{utid}",
        local_account_id=str(id_claims.get("oid") or uid),
        realm=str(id_claims.get("tid") or utid),
        username=username,
        environment=environment,
        name=name,
        given_name=given,
        family_name=family,
        client_info=client_info,
    )


def error_from_result(result: Mapping[str, Any], site: str) -> BrokerStatusError:
    """An msal error dict as a BrokerStatusError: 2 when a person must sign in, else 0."""
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "").strip()
    codes = result.get("error_codes")
    code = 0
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        code = codes[0]
    elif match := _AADSTS.search(description):
        code = int(match.group(1))
    first_line = description.splitlines()[0] if description else ""
    context = _REDIRECT_CODES.sub(r"AADSTS-\1", f"{error}: {first_line}" if first_line else error)
    status = broker1.Status.UNEXPECTED
    if error in INTERACTION_ERRORS:
        status = broker1.Status.INTERACTION_REQUIRED
    return BrokerStatusError(status, context[:1000], error_code=code, tag=site)


def unreachable(exc: BaseException, authority: str, site: str) -> BrokerStatusError:
    """An authority that cannot be reached, with a doctor-style hint naming the setting."""
    hint = (
        f"check that it is running, or set {AUTHORITY_SETTING} (or `authority` in the config "
        "file) to the authority's URL with its port, e.g. https://127.0.0.1:8443"
    )
    if isinstance(exc, requests.exceptions.SSLError):
        what, status = "its TLS certificate is not trusted", broker1.Status.NO_NETWORK
        hint = "point REQUESTS_CA_BUNDLE at a bundle that includes the authority's CA"
    elif isinstance(exc, requests.exceptions.Timeout):
        what, status = "it did not answer in time", broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE
    elif isinstance(exc, requests.exceptions.ConnectionError):
        what, status = "the connection failed", broker1.Status.NO_NETWORK
    elif isinstance(exc, requests.exceptions.RequestException):
        what, status = "the request failed", broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE
    else:  # msal's ValueError("Unable to get authority configuration ...") and the like
        what, status = "it has no usable OpenID configuration", broker1.Status.UNEXPECTED
    return BrokerStatusError(
        status, f"cannot reach the authority {authority}: {what}; {hint}", tag=site
    )


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
            raise unreachable(exc, target.authority, "engine.app") from None
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
        self, app: msal.PublicClientApplication, auth: broker1.AuthParameters, claims: Claims,
        target: Target, home_account_id: str,
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
            raise unreachable(exc, target.authority, "engine.silent.network") from None
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

    # -- results ------------------------------------------------------------------------------

    def token_result(
        self,
        result: Mapping[str, Any],
        requested_scopes: tuple[str, ...],
        app: msal.PublicClientApplication,
        target: Target,
        home_account_id: str | None = None,
    ) -> broker1.TokenResult:
        """An msal result as a wire TokenResult (or the BrokerStatusError it carries)."""
        if "error" in result:
            self.forget_http_cache()
            raise error_from_result(result, "engine.result")
        access_token = result.get("access_token")
        if not access_token:
            raise BrokerStatusError(
                broker1.Status.UNEXPECTED, "the authority returned no access token",
                tag="engine.no_at",
            )
        id_token = str(result.get("id_token") or "")
        id_claims = dict(result.get("id_token_claims") or {})
        if not id_token and home_account_id:
            id_token = self._cached_id_token(app, target, home_account_id)
        if id_token and not id_claims:
            id_claims = decode_claims(id_token)
        client_info = str(result.get("client_info") or "")
        if not client_info:
            oid, tid = id_claims.get("oid") or id_claims.get("sub"), id_claims.get("tid")
            if not (oid and tid) and home_account_id and "." in home_account_id:
                oid, tid = home_account_id.split(".", 1)
            if not (oid and tid):
                raise BrokerStatusError(
                    broker1.Status.UNEXPECTED,
                    "the authority's answer names no account (no client_info, oid or tid)",
                    tag="engine.no_account",
                )
            client_info = broker1.encode_client_info(str(oid), str(tid))
        now = time.time()
        expires_in = float(result.get("expires_in") or 3600)
        ext = float(result.get("ext_expires_in") or expires_in)
        return broker1.TokenResult(
            access_token=str(access_token),
            id_token=id_token,
            client_info=client_info,
            expires_on=now + expires_in,
            extended_expires_on=now + ext,
            granted_scopes=tuple(requested_scopes),
            account=account_from(id_claims, client_info, target.environment),
        )

    def _cached_id_token(
        self, app: msal.PublicClientApplication, target: Target, home_account_id: str
    ) -> str:
        query = {
            "home_account_id": home_account_id,
            "environment": target.environment,
            "client_id": app.client_id,
        }
        kind = msal.TokenCache.CredentialType.ID_TOKEN
        for entry in app.token_cache.search(kind, query=query):
            return str(entry.get("secret") or "")
        return ""

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
