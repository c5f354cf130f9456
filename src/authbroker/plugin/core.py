"""The sans-I/O core shared by the sync and async ``InteractiveBrowserBrokerCredential``.

It decides *what* to do, never *how*. ``PluginCore.flow`` is the decision: a generator yielding
operations (``Silent``, ``Interactive``) and receiving their ``Token`` (or having their
``BackendError`` thrown in). ``Fallback.run`` performs each operation by the backend-fallback
policy, itself as yielded steps (``Probe`` a name -> reason or None, ``Make`` a name -> backend,
``Call`` a backend -> Token), which the drivers (``authbroker.plugin.drivers``) carry out by
blocking or by awaiting. The core also owns the in-process token memo (separate entries for
CAE) and the account the credential is signed in with. The azure-identity internals it needs
are lent by the credential (from ``azure.identity.broker._compat``), never imported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlparse

from azure.core.credentials import AccessTokenInfo

from authbroker.broker1 import Account
from authbroker.plugin.backends.base import BackendError, Kind, PopRequest, Token, TokenQuery
from authbroker.plugin.backends.select import Selection
from authbroker.plugin.translate import NeedsInteraction
from azure.identity import AuthenticationRecord

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


@dataclass(frozen=True)
class Probe:
    """Run the availability probe of backend ``name``; reply with its reason, or None."""

    name: str


@dataclass(frozen=True)
class Make:
    """Construct backend ``name``; reply with it."""

    name: str


@dataclass(frozen=True)
class Call:
    """Run ``op`` on ``backend``; reply with its Token (or throw its BackendError in)."""

    backend: Any
    op: Op
    query: TokenQuery

    def invoke(self) -> Any:
        """The backend's call: a Token from a blocking backend, an awaitable from an async one."""
        if isinstance(self.op, Silent):
            return self.backend.silent(self.query, self.op.account)
        return self.backend.interactive(self.query, prompt=self.op.prompt)


Step = Probe | Make | Call


@dataclass(frozen=True)
class Done:
    """A generator finished with ``value``."""

    value: Any


def resume(
    steps: Generator[Any, Any, Any], reply: Any = None, failure: BaseException | None = None
) -> Any:
    """The next thing ``steps`` yields after ``reply`` (or ``failure`` thrown in), or ``Done``."""
    try:
        return steps.throw(failure) if failure is not None else steps.send(reply)
    except StopIteration as stop:
        return Done(stop.value)


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
    """One credential's decisions: its options, token memo, signed-in account and record."""

    def __init__(
        self,
        options: Options,
        record: AuthenticationRecord | None = None,
        *,
        resolve_tenant: Callable[..., str],
        build_auth_record: Callable[[dict[str, Any]], AuthenticationRecord],
    ) -> None:
        """``resolve_tenant`` and ``build_auth_record`` are azure-identity's own (lent by
        ``azure.identity.broker._compat``): the tenant rules and the record stay theirs."""
        self.options = options
        self._resolve_tenant = resolve_tenant
        self._build_auth_record = build_auth_record
        self.record = record
        self.account = account_from_record(record) if record else None
        self._memo: dict[tuple[Any, ...], tuple[AccessTokenInfo, int]] = {}

    # -- request -------------------------------------------------------------------------------

    def query(
        self, scopes: tuple[str, ...], options: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> TokenQuery:
        opts = self.options
        tenant = self._resolve_tenant(
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
            self.record = self._build_auth_record(token.as_msal_result(now))
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


class Fallback:
    """The backend-fallback policy of one driver, and the backends it has made.

    Candidates are probed in ``Selection`` order and made on first use (never in a
    constructor). A backend that probes unusable, or fails an operation with
    ``Kind.UNAVAILABLE``, is dropped with its reason and the operation repeats on the next one;
    when none is left the Selection's error is raised. Other failures never fall back.
    """

    def __init__(self, selection: Selection | None = None) -> None:
        self.selection = selection or Selection()
        self.backends: dict[str, Any] = {}

    def run(
        self, flow: Generator[Op, Token, Token], query: TokenQuery
    ) -> Generator[Step, Any, Token]:
        """The decision ``flow`` with each of its operations performed by ``perform``."""
        op = resume(flow)
        while not isinstance(op, Done):
            try:
                reply, failure = (yield from self.perform(op, query)), None
            except BackendError as exc:
                reply, failure = None, exc
            op = resume(flow, reply, failure)
        return cast(Token, op.value)

    def perform(self, op: Op, query: TokenQuery) -> Generator[Step, Any, Token]:
        """``op`` on the first usable backend, moving on while backends turn out unavailable."""
        while True:
            backend = yield from self.backend()
            try:
                return cast(Token, (yield Call(backend, op, query)))
            except BackendError as exc:
                if exc.kind is not Kind.UNAVAILABLE:
                    raise
                self._drop(backend.name, exc.message)

    def backend(self) -> Generator[Step, Any, Any]:
        """The first usable candidate (probing, then making, candidates not yet tried)."""
        for name in self.selection.candidates():
            if name in self.backends:
                return self.backends[name]
            reason = yield Probe(name)
            if reason:
                self._drop(name, reason)
                continue
            self.backends[name] = yield Make(name)
            return self.backends[name]
        raise self.selection.exhausted_error()

    def release(self) -> list[Any]:
        """Every backend made so far, forgotten (the driver closes them)."""
        made = list(self.backends.values())
        self.backends.clear()
        return made

    def _drop(self, name: str, reason: str) -> None:
        _LOGGER.info("authentication backend %r is unavailable: %s", name, reason)
        self.selection.drop(name, reason)
