"""The sans-I/O core shared by the sync and async ``InteractiveBrowserBrokerCredential``.

It decides *what* to ask a backend, never *how*: ``flow`` is a generator that yields operations
(``Silent``, ``Interactive``) and receives their ``Token`` (or has their ``BackendError`` thrown
in). The twins drive it with a blocking or an awaiting runner (``authbroker.plugin.drivers``).
It also owns the in-process token memo (separate entries for CAE), the account the credential
is signed in with, and the translation of failures into azure-core / azure-identity errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from azure.identity._internal import resolve_tenant, within_dac
from azure.identity._internal.interactive import _build_auth_record

from authbroker.broker1 import NATIVE_CLIENT_REDIRECT_URI, Account
from authbroker.plugin.backends.base import BackendError, Kind, PopRequest, Token, TokenQuery
from azure.identity import (
    AuthenticationRecord,
    AuthenticationRequiredError,
    CredentialUnavailableError,
)

_LOGGER = logging.getLogger("azure.identity.broker")

MSA_PASSTHROUGH_QUERY = {"msal_request_type": "consumer_passthrough"}
REFRESH_MARGIN_S = 300


@dataclass(frozen=True)
class Silent:
    account: Account | None  # None: the broker's default account


@dataclass(frozen=True)
class Interactive:
    prompt: str = "select_account"


Op = Silent | Interactive


class NeedsInteraction(Exception):
    """A person must sign in, and this credential is configured not to ask."""


@dataclass(frozen=True)
class Options:
    client_id: str
    authority: str  # "https://host"
    tenant_id: str
    additionally_allowed_tenants: tuple[str, ...] = ()
    login_hint: str | None = None
    timeout: float = 300.0
    redirect_port: int | None = None
    parent_window_handle: Any = None
    enable_msa_passthrough: bool = False
    use_default_broker_account: bool = False
    disable_interactive_fallback: bool = False
    enable_support_logging: bool = False


def check_authority(authority: str, tenant_id: str) -> None:
    """B2C is not something any broker serves: say so at construction."""
    host = (urlparse(authority).hostname or "").lower()
    if (
        host.endswith(".b2clogin.com")
        or "/tfp/" in authority.lower()
        or tenant_id.lower().startswith("b2c_1")
    ):
        raise ValueError(
            "Azure AD B2C authorities are not supported by InteractiveBrowserBrokerCredential "
            "(brokers serve Microsoft Entra ID only); "
            "use azure.identity.InteractiveBrowserCredential"
        )


def redirect_uri_help(client_id: str) -> str:
    return (
        "The redirect URI is not registered for this application (AADSTS50011). Register the one "
        f"for each platform you use on app {client_id}: Windows (WAM) "
        f"'ms-appx-web://Microsoft.AAD.BrokerPlugin/{client_id}'; Linux brokers "
        f"'{NATIVE_CLIENT_REDIRECT_URI}'; macOS broker 'msauth.com.msauth.unsignedapp://auth'; "
        "browser fallback 'http://localhost'"
    )


def pop_request(value: Any) -> PopRequest | None:
    if not value:
        return None
    if value is True:
        raise BackendError(
            Kind.UNSUPPORTED, "mTLS Proof-of-Possession (pop=True) is not supported by any backend"
        )
    if not isinstance(value, Mapping):
        raise ValueError("'pop' must be a mapping with resource_request_method/url and nonce")
    try:
        return PopRequest(
            method=str(value["resource_request_method"]),
            url=str(value["resource_request_url"]),
            nonce=str(value["nonce"]),
        )
    except KeyError as exc:
        raise ValueError(f"'pop' is missing the key {exc}") from exc


def account_from_record(record: AuthenticationRecord) -> Account:
    return Account(
        home_account_id=record.home_account_id,
        local_account_id=record.home_account_id.split(".", 1)[0],
        realm=record.tenant_id,
        username=record.username,
        environment=record.authority,
    )


class PluginCore:
    def __init__(self, options: Options, record: AuthenticationRecord | None = None) -> None:
        self.options = options
        self.record = record
        self.account = account_from_record(record) if record else None
        self._memo: dict[tuple[Any, ...], tuple[AccessTokenInfo, int]] = {}

    # -- request -------------------------------------------------------------------------------

    def query(
        self, scopes: tuple[str, ...], options: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> TokenQuery:
        opts = self.options
        tenant = resolve_tenant(
            opts.tenant_id,
            additionally_allowed_tenants=list(opts.additionally_allowed_tenants),
            tenant_id=options.get("tenant_id"),
        )
        pop = options.get("pop", extra.get("pop"))
        return TokenQuery(
            client_id=opts.client_id,
            authority=opts.authority,
            tenant_id=tenant,
            scopes=scopes,
            claims=options.get("claims") or None,
            enable_cae=bool(options.get("enable_cae", False)),
            pop=pop_request(pop),
            login_hint=opts.login_hint,
            parent_window_handle=opts.parent_window_handle,
            extra_query=MSA_PASSTHROUGH_QUERY if opts.enable_msa_passthrough else {},
            enable_msa_passthrough=opts.enable_msa_passthrough,
            timeout=opts.timeout,
            redirect_port=opts.redirect_port,
        )

    # -- in-process memo -----------------------------------------------------------------------

    @staticmethod
    def _key(query: TokenQuery) -> tuple[Any, ...]:
        return (query.enable_cae, query.tenant_id, frozenset(query.scopes))

    def cached(self, query: TokenQuery) -> AccessTokenInfo | None:
        """A still-fresh token from this credential's memory; claims and PoP always miss."""
        if query.claims or query.pop is not None:
            return None
        entry = self._memo.get(self._key(query))
        if entry is not None and time.time() < entry[1]:
            return entry[0]
        return None

    def accept(self, query: TokenQuery, token: Token) -> AccessTokenInfo:
        now = int(time.time())
        info = AccessTokenInfo(
            token.access_token,
            token.expires_on,
            token_type=token.token_type,
            refresh_on=token.refresh_on,
        )
        if token.account is not None and (
            self.account is None or token.account.home_account_id != self.account.home_account_id
        ):
            self._memo.clear()  # another person signed in: nothing cached belongs to them
            self.account = token.account
        if token.id_token_claims:
            self.record = _build_auth_record(token.as_msal_result(now))
        if query.pop is None:
            lifetime = max(0, token.expires_on - now)
            refresh_at = token.expires_on - min(REFRESH_MARGIN_S, lifetime // 2)
            if token.refresh_on:
                refresh_at = min(refresh_at, token.refresh_on)
            self._memo[self._key(query)] = (info, refresh_at)
        if self.options.enable_support_logging:
            _LOGGER.info("token for %s as %s", " ".join(query.scopes), self.account)
        return info

    def clear(self) -> None:
        self._memo.clear()

    # -- the decision --------------------------------------------------------------------------

    def flow(self, query: TokenQuery, allow_prompt: bool) -> Generator[Op, Token, Token]:
        opts = self.options
        if self.account is not None:
            try:
                return (yield Silent(self.account))
            except BackendError as exc:
                if exc.kind is not Kind.INTERACTION_REQUIRED:
                    raise
        if opts.use_default_broker_account:
            try:
                return (yield Silent(None))
            except BackendError as exc:
                if exc.kind not in (Kind.INTERACTION_REQUIRED, Kind.FAILED):
                    raise
                if opts.disable_interactive_fallback:
                    if exc.kind is Kind.FAILED:
                        raise
                    raise NeedsInteraction(
                        "The default broker account needs interactive sign-in, and "
                        f"disable_interactive_fallback is set: {exc.message}"
                    ) from exc
        if not allow_prompt:
            raise NeedsInteraction(
                "Interactive authentication is required to get a token, and automatic "
                "authentication is disabled. Call authenticate() to sign in."
            )
        if opts.disable_interactive_fallback:
            raise NeedsInteraction(
                "Interactive authentication is required to get a token, and "
                "disable_interactive_fallback is set."
            )
        return (yield Interactive("select_account"))

    # -- errors --------------------------------------------------------------------------------

    def translate(self, exc: BaseException, query: TokenQuery | None) -> BaseException:
        """The error a caller of get_token sees (the client → azure-core edge)."""
        scopes = query.scopes if query else ()
        claims = query.claims if query else None
        in_dac = within_dac.get()
        if isinstance(exc, NeedsInteraction):
            return AuthenticationRequiredError(scopes, message=str(exc), claims=claims)
        if isinstance(exc, CredentialUnavailableError | ValueError):
            return exc
        if isinstance(exc, ClientAuthenticationError):
            return CredentialUnavailableError(message=exc.message) if in_dac else exc
        if isinstance(exc, BackendError):
            if exc.kind is Kind.INTERACTION_REQUIRED:
                return AuthenticationRequiredError(scopes, message=exc.message, claims=claims)
            message = exc.message
            if "AADSTS50011" in message:
                message = f"{message}. {redirect_uri_help(self.options.client_id)}"
            if exc.kind is Kind.UNAVAILABLE or in_dac:
                return CredentialUnavailableError(message=message)
            return ClientAuthenticationError(message=f"Authentication failed: {message}")
        message = f"Authentication failed: {exc}"
        return (
            CredentialUnavailableError(message=message)
            if in_dac
            else ClientAuthenticationError(message=message)
        )
