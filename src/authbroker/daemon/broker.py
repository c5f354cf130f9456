"""The broker core: accounts, default account, token calls, sign-in; implements api.Handler.

``BrokerCore(store, settings)`` answers typed ``ipc`` requests (the D-Bus façade in service.py
parses and replies). State is one document persisted through the store after every change::

    {"core": 2,
     "msalCaches": {"plain": "<msal SerializableTokenCache>", "CP1": "<the CAE one>", ...},
     "accounts": [<broker1.Account wire object> + {"lastSignIn": epoch s}, ...],
     "defaultAccount": "<homeAccountId>" | null, "defaultChosen": bool}

One msal cache per client-capability set (see engine.py), so CAE and plain tokens never mix.
A version 1 document (one ``"msalCache"`` for both) is migrated on load: its cache becomes the
plain one without its access tokens (they cannot be told apart), and the next save writes
version 2.

The default account (the one ``account: null`` sign-ins get) is the one chosen with
``SetDefaultAccount`` (:meth:`BrokerCore.set_default_account`), else the latest interactive
sign-in, else the only account. A chosen default stays the default when other accounts sign in;
removing it makes the most recent sign-in the default again.

Concurrent identical silent requests share one msal call (key: client id, authority, account,
scopes, client capabilities, claims challenge). Every blocking call (store, msal, network) runs
in the core's thread executor; the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Protocol, TypeVar

import requests

from authbroker import broker1
from authbroker.config import Settings, setting
from authbroker.daemon import signin
from authbroker.daemon.handler import CallContext
from authbroker.daemon.msal_engine import TokenEngine, split_claims, unreachable
from authbroker.errors import BrokerProtocolError, BrokerStatusError, ConfigurationError

log = logging.getLogger(__name__)

DOCUMENT_VERSION = 2
#: Document versions this code reads (older ones are migrated on load).
READABLE_VERSIONS = frozenset({1, 2})
#: msal treats an access token with less than this many seconds left as expired.
HOT_MARGIN_S = 300.0
HOT_MAX_ENTRIES = 1024
T = TypeVar("T")
R = TypeVar("R")


def _expect(request: broker1.Request, kind: type[R]) -> R:
    if not isinstance(request, kind):
        raise BrokerStatusError(
            broker1.Status.API_CONTRACT_VIOLATION,
            f"expected a {kind.__name__}, got a {type(request).__name__}",
            tag="core.request_type",
        )
    return request


def _silent_key(auth: broker1.AuthParameters, authority: str, home_account_id: str) -> tuple[Any,
                                                                                             ...]:
    """What makes two silent requests the same: client, authority, account, scopes, client
    capabilities (a CAE token is never served to a plain request, nor the other way round)
    and claims challenge. The account stays at index 2 (remove_account filters on it)."""
    claims = split_claims(auth.decoded_claims)
    return (
        auth.client_id,
        authority,
        home_account_id,
        tuple(sorted(s.lower() for s in auth.requested_scopes)),
        claims.capabilities,
        claims.challenge,
    )


def _timeout_setting() -> float:
    raw = setting("sign_in_timeout")
    if not raw:
        return signin.DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < broker1.CLIENT_CALL_TIMEOUT_S:
        raise ConfigurationError(
            "sign_in_timeout must be a number of seconds below "
            f"{broker1.CLIENT_CALL_TIMEOUT_S:.0f}, not {raw!r}",
            hint="fix AUTHBROKER_SIGN_IN_TIMEOUT or sign_in_timeout in the config file",
        )
    return value


class DocumentStore(Protocol):
    def load(self) -> dict[str, Any]: ...

    def save(self, doc: dict[str, Any]) -> None: ...


class BrokerCore:
    """The Broker1 handler. ``store`` may be None (nothing persists: tests, ``--ephemeral``)."""

    def __init__(
        self,
        store: DocumentStore | None,
        settings: Settings | None = None,
        *,
        sign_in_timeout: float | None = None,
        http_client: Any = None,
        open_url: Callable[[str], bool] | None = None,
    ) -> None:
        settings = settings or Settings.load()
        self.store = store
        self.ui_mode = getattr(settings, "ui", None)
        self.sign_in_timeout = sign_in_timeout or _timeout_setting()
        self.engine = TokenEngine(getattr(settings, "authority", None), http_client=http_client)
        self._open_url = open_url
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="authbroker-core")
        self._accounts: dict[str, dict[str, Any]] = {}
        self._default: str | None = None
        self._default_chosen = False  # chosen with SetDefaultAccount: sign-ins keep it
        self._loaded = False
        self._unsaved = False
        self._removals: dict[str, int] = {}  # per account, bumped by removeAccount (_silent)
        self._load_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()
        self._inflight: dict[tuple[Any, ...], asyncio.Future[broker1.TokenResult]] = {}
        #: Recent silent results by request key, served while msal would serve them from its
        #: cache (more than 5 minutes left), without a trip to the executor.
        self._hot: dict[tuple[Any, ...], broker1.TokenResult] = {}
        self._sign_ins: set[signin.SignIn] = set()

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def start(self) -> None:
        """Load the store (done lazily by the first call otherwise)."""
        if self._loaded:
            return
        async with self._load_lock:
            if self._loaded:
                return
            doc = await self._run(self.store.load) if self.store else {}
            self._apply_document(doc)
            self._loaded = True
            log.info("broker state loaded: %d account(s)", len(self._accounts))

    def _apply_document(self, doc: dict[str, Any]) -> None:
        version = doc.get("core", DOCUMENT_VERSION)
        if version not in READABLE_VERSIONS:
            log.error("the store holds an unknown document version; starting empty")
            return
        try:
            if version == 1:
                dropped = self.engine.load_legacy_cache(doc.get("msalCache"))
                self._unsaved = bool(doc)  # write the new format at the next call
                log.info("store document migrated to version %d (%d cached access token(s) "
                         "dropped)", DOCUMENT_VERSION, dropped)
            else:
                caches = doc.get("msalCaches")
                self.engine.load_caches(caches if isinstance(caches, dict) else {})
        except ValueError as exc:
            log.error("the store's token cache is unreadable (%s); starting with an empty one",
                      exc)
        for entry in doc.get("accounts") or []:
            try:
                account = broker1.Account.from_wire(entry)
            except BrokerProtocolError as exc:
                log.error("skipping an unreadable account in the store: %s", exc)
                continue
            self._accounts[account.home_account_id] = dict(
                entry, homeAccountId=account.home_account_id
            )
        default = doc.get("defaultAccount")
        self._default = default if default in self._accounts else None
        self._default_chosen = bool(self._default and doc.get("defaultChosen"))

    def _document(self) -> dict[str, Any]:
        return {
            "core": DOCUMENT_VERSION,
            "msalCaches": self.engine.serialize_caches(),
            "accounts": list(self._accounts.values()),
            "defaultAccount": self._default,
            "defaultChosen": self._default_chosen,
        }

    async def _persist(self, *, force: bool = False) -> None:
        if self.store is None:
            return
        async with self._save_lock:
            if not (force or self._unsaved or self.engine.has_state_changed):
                return
            doc = self._document()
            try:
                await self._run(self.store.save, doc)
            except Exception as exc:  # the token is still good; the next call saves again
                log.error("could not save the broker store: %s", exc)
                self._unsaved = True
            else:
                self._unsaved = False

    async def aclose(self) -> None:
        for sign_in in list(self._sign_ins):
            sign_in.cancel()
        if self._loaded:
            await self._persist()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(
        self, method: broker1.AnyMethod, request: broker1.Request, ctx: CallContext
    ) -> broker1.Result:
        await self.start()
        if method is broker1.UiMethod.SET_DEFAULT_ACCOUNT:
            chosen = self.find_account(_expect(request, broker1.SetDefaultAccountRequest))
            await self.set_default_account(chosen)
            log.info("SetDefaultAccount %s: the default account is now %s", ctx.correlation_id,
                     chosen)
            return broker1.OkResult()
        if method is broker1.UiMethod.GET_DEFAULT_ACCOUNT:
            default = self.default_account
            return broker1.DefaultAccountResult(
                broker1.Account.from_wire(self._accounts[default]) if default else None
            )
        if method is broker1.Method.GET_ACCOUNTS:
            return broker1.AccountsResult(tuple(self.accounts()))
        if method is broker1.Method.ACQUIRE_TOKEN_SILENTLY:
            return await self.acquire_silent(_expect(request, broker1.TokenRequest).auth, ctx)
        if method is broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY:
            return await self.acquire_interactive(_expect(request, broker1.TokenRequest).auth, ctx)
        if method is broker1.Method.REMOVE_ACCOUNT:
            account = _expect(request, broker1.RemoveAccountRequest).account
            await self.remove_account(account.home_account_id)
            return broker1.OkResult()
        if method is broker1.Method.CANCEL_INTERACTIVE_FLOW:
            self.cancel_interactive(ctx)
            return broker1.OkResult()
        if method is broker1.Method.GET_LINUX_BROKER_VERSION:
            return broker1.VersionResult()
        raise BrokerStatusError(
            broker1.Status.UNEXPECTED,
            f"{method} is not supported yet by authbroker",
            tag=f"core.unsupported.{method}",
        )

    # -- accounts -----------------------------------------------------------------------------

    def accounts(self) -> list[broker1.Account]:
        """Signed-in accounts, the default first, then the most recently signed-in.

        ``getAccounts`` lists every account whatever the request's client id, as brokers do:
        an account signed in by one app is offered to the others (each app still needs its own
        consent at the authority, and ``removeAccount`` forgets the account for every app).
        """
        ordered = sorted(
            self._accounts.values(),
            key=lambda a: (a["homeAccountId"] != self._default, -float(a.get("lastSignIn", 0))),
        )
        return [broker1.Account.from_wire(a) for a in ordered]

    @property
    def default_account(self) -> str | None:
        if self._default in self._accounts:
            return self._default
        if len(self._accounts) == 1:
            return next(iter(self._accounts))
        return None

    def find_account(self, request: broker1.SetDefaultAccountRequest) -> str:
        """The homeAccountId of the signed-in account a request names; BrokerStatusError if none."""
        if request.home_account_id:
            if request.home_account_id in self._accounts:
                return request.home_account_id
            wanted = f"account {request.home_account_id}"
            found: list[str] = []
        else:
            wanted = request.username
            found = [hid for hid, a in self._accounts.items()
                     if str(a.get("username", "")).lower() == request.username.lower()]
        if len(found) > 1:
            raise BrokerStatusError(
                broker1.Status.API_CONTRACT_VIOLATION,
                f"several signed-in accounts are named {wanted}; name one by homeAccountId",
                tag="core.default.ambiguous",
            )
        if not found:
            names = ", ".join(sorted(str(a.get("username")) for a in self._accounts.values()))
            raise BrokerStatusError(
                broker1.Status.ACCOUNT_NOT_FOUND,
                f"{wanted} is not signed in to the broker (signed in: {names or 'nobody'})",
                tag="core.default.unknown",
            )
        return found[0]

    async def set_default_account(self, home_account_id: str) -> None:
        """Make a signed-in account the default; it stays so until chosen otherwise or removed."""
        await self.start()
        if home_account_id not in self._accounts:
            raise BrokerStatusError(
                broker1.Status.ACCOUNT_NOT_FOUND,
                f"no signed-in account {home_account_id}",
                tag="core.default.unknown",
            )
        self._default = home_account_id
        self._default_chosen = True
        await self._persist(force=True)

    async def remove_account(self, home_account_id: str) -> None:
        await self.start()
        self._removals[home_account_id] = self._removals.get(home_account_id, 0) + 1
        removed = await self._run(self.engine.remove_account, home_account_id)
        known = self._accounts.pop(home_account_id, None) is not None
        self._hot = {k: v for k, v in self._hot.items() if k[2] != home_account_id}
        if self._default == home_account_id:
            rest = sorted(self._accounts.values(), key=lambda a: -float(a.get("lastSignIn", 0)))
            self._default = rest[0]["homeAccountId"] if rest else None
            self._default_chosen = False
        log.info(
            "removed account %s (%s, %d cache entries)",
            home_account_id,
            "known" if known else "unknown",
            removed,
        )
        await self._persist(force=True)

    def _remember(self, account: broker1.Account | None) -> None:
        if account is None:
            return
        self._accounts[account.home_account_id] = dict(account.to_wire(), lastSignIn=time.time())
        if not (self._default_chosen and self._default in self._accounts):
            self._default = account.home_account_id
            self._default_chosen = False

    # -- tokens -------------------------------------------------------------------------------

    async def acquire_silent(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        await self.start()
        home_account_id = auth.account.home_account_id if auth.account else self.default_account
        if not home_account_id:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                "no account is signed in (or none is the default); sign in interactively",
                tag="core.silent.no_account",
            )
        target = self.engine.target(auth)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "silent %s: authority %s -> %s, scopes %s, claims %r, renew %s, force %s, "
                "query %s", ctx.correlation_id, auth.authority, target.authority,
                list(auth.requested_scopes), auth.decoded_claims,
                bool(auth.access_token_to_renew), auth.force_refresh, sorted(auth.extra_query),
            )
        force = auth.force_refresh or bool(auth.access_token_to_renew)
        key = _silent_key(auth, target.authority, home_account_id)
        challenge = bool(auth.decoded_claims) and split_claims(auth.decoded_claims).challenge
        if not force and not challenge:
            hot = self._hot.get(key)
            if hot is not None and hot.expires_on - time.time() > HOT_MARGIN_S:
                if self._unsaved:
                    await self._persist()
                return hot
        flight = (*key, force)
        shared = self._inflight.get(flight)
        if shared is None:
            shared = asyncio.ensure_future(self._silent(auth, home_account_id, ctx, key))
            self._inflight[flight] = shared
            shared.add_done_callback(lambda _f: self._inflight.pop(flight, None))
        return await asyncio.shield(shared)

    def _keep_hot(self, key: tuple[Any, ...], result: broker1.TokenResult) -> None:
        if len(self._hot) >= HOT_MAX_ENTRIES:
            now = time.time()
            self._hot = {k: v for k, v in self._hot.items() if v.expires_on - now > HOT_MARGIN_S}
            if len(self._hot) >= HOT_MAX_ENTRIES:
                self._hot.clear()
        self._hot[key] = result

    async def _silent(
        self, auth: broker1.AuthParameters, home_account_id: str, ctx: CallContext,
        key: tuple[Any, ...],
    ) -> broker1.TokenResult:
        removals = self._removals.get(home_account_id, 0)
        try:
            result = await self._run(self.engine.acquire_silent, auth, home_account_id)
            # removed meanwhile: the refresh must not bring the account back
            if self._removals.get(home_account_id, 0) != removals:
                await self._run(self.engine.remove_account, home_account_id)
                raise BrokerStatusError(
                    broker1.Status.INTERACTION_REQUIRED,
                    "the account was signed out while its token was being refreshed",
                    tag="core.silent.removed",
                )
        except BrokerStatusError as exc:
            log.info(
                "silent %s for %s: status %d (%s)",
                ctx.correlation_id,
                auth.client_id,
                int(exc.status),
                exc.context,
            )
            raise
        if result.account and result.account.home_account_id not in self._accounts:
            self._accounts[result.account.home_account_id] = dict(
                result.account.to_wire(), lastSignIn=0.0
            )
        log.info("silent %s for %s: token for %s", ctx.correlation_id, auth.client_id,
                 list(auth.requested_scopes))
        self._keep_hot(key, result)
        await self._persist()
        return result

    async def acquire_interactive(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        await self.start()
        mode = await self._run(signin.choose_mode, self.ui_mode)  # webbrowser may run xdg-settings
        target = self.engine.target(auth)
        claims = split_claims(auth.decoded_claims)
        app = await self._run(self.engine.app, auth.client_id, target, claims.capabilities)
        kwargs = {"open_url": self._open_url} if self._open_url else {}
        interaction = signin.Interaction(app, auth, ctx, self._executor, **kwargs)
        log.debug(
            "interactive %s: authority %s, scopes %s, prompt %r, hint %s, claims %r, query %s",
            ctx.correlation_id, auth.authority, list(auth.requested_scopes), auth.prompt,
            bool(auth.login_hint), auth.decoded_claims, sorted(auth.extra_query),
        )
        sign_in = signin.SignIn(ctx.correlation_id, ctx.sender)
        self._sign_ins.add(sign_in)
        log.info(
            "interactive %s for %s at %s (%s)", ctx.correlation_id, auth.client_id,
            target.authority, mode,
        )
        try:
            msal_result = await sign_in.run(
                interaction.sign_in(mode, forced=bool(self.ui_mode)), self.sign_in_timeout
            )
        except requests.exceptions.RequestException as exc:
            self.engine.forget_http_cache()
            raise unreachable(exc, target.authority, "core.interactive.network") from None
        finally:
            self._sign_ins.discard(sign_in)
        result = await self._run(
            self.engine.token_result, msal_result, auth.requested_scopes, app, target
        )
        self._remember(result.account)
        if result.account:
            key = _silent_key(auth, target.authority, result.account.home_account_id)
            self._keep_hot(key, result)
            # the other capability caches that know the account get the new refresh token
            await self._run(self.engine.spread_account, claims.capabilities,
                            result.account.home_account_id, target.environment)
        log.info(
            "interactive %s: signed in %s", ctx.correlation_id,
            result.account.username if result.account else "?",
        )
        await self._persist(force=True)
        return result

    def cancel_interactive(self, ctx: CallContext) -> int:
        """Cancel the caller's running sign-ins: same correlation id, else same connection.

        Never anyone else's: pymsalruntime sends its cancel only after its own interactive call
        has returned, and that late cancel must not end another app's sign-in.
        """
        running = list(self._sign_ins)
        chosen = [s for s in running if s.correlation_id == ctx.correlation_id] or [
            s for s in running if ctx.sender and s.sender == ctx.sender
        ]
        for sign_in in chosen:
            sign_in.cancel()
        log.info("cancelInteractiveFlow %s: cancelled %d of %d sign-in(s)", ctx.correlation_id,
                 len(chosen), len(running))
        return len(chosen)
