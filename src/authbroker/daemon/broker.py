"""The broker: Broker1 calls dispatched to coroutines, silent and interactive sign-ins run.

``BrokerCore(store, settings)`` implements ``handler.Handler``: the D-Bus façade (service.py)
parses each call and replies; the broker answers a typed ``broker1`` result or raises
``BrokerStatusError``. Calls go through a table, method → coroutine, each route getting the
request type ``broker1.METHODS`` declares (a method without a route is "not supported yet").
It only orchestrates: the account table and the default account are ``accounts.py``'s,
msal's applications and per-account partitions ``msal_engine.py``'s, the interactive flows
``signin.py``'s. What changed is committed (those accounts only, ``persistence.py``) before
the caller is answered (a failed save is retried by the next call).

A silent result is kept in memory by its :class:`SilentKey` while more than 5 minutes remain
(msal's own rule), so a cache hit never leaves the event loop; concurrent identical silent
requests share one msal call. Every blocking call (store, msal, network) runs in the broker's
thread executor; the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import requests

from authbroker import broker1
from authbroker.config import Settings
from authbroker.daemon import audit, signin
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.callers import RecentCallers
from authbroker.daemon.handler import CallContext
from authbroker.daemon.hot import HotTokens, SilentKey
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import AccountStore, Persistence
from authbroker.daemon.results import unreachable
from authbroker.daemon.routing import PublicCloudRoute, refuse_pop, split_claims
from authbroker.daemon.store import Store
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
#: A route answers one method; its request is of the type METHODS declares for it.
Route = Callable[[Any, CallContext], Awaitable[broker1.Result]]
#: A token and how it was served (audit.MEMO, CACHE, REFRESH, FAMILY or SIGN_IN).
Served = tuple[broker1.TokenResult, str]


def _expect(request: broker1.Request, kind: type[R]) -> R:
    if not isinstance(request, kind):
        raise BrokerStatusError(
            broker1.Status.API_CONTRACT_VIOLATION,
            f"expected a {kind.__name__}, got a {type(request).__name__}",
            tag="core.request_type",
        )
    return request


class BrokerCore:
    """The Broker1 handler. ``store`` may be None (nothing persists: tests, ``--ephemeral``)."""

    def __init__(
        self,
        store: AccountStore | Store | None,
        settings: Settings | None = None,
        *,
        sign_in_timeout: float | None = None,
        http_client: Any = None,
        open_url: Callable[[str], bool] | None = None,
        audit_log: audit.AuditLog | None = None,
    ) -> None:
        settings = settings or Settings.load()
        self.store = AccountStore.of(store) if store is not None else None
        self.ui_mode = getattr(settings, "ui", None)
        self.sign_in_timeout = sign_in_timeout or signin.timeout_setting()
        self.engine = TokenEngine(getattr(settings, "authority", None), http_client=http_client)
        #: The routing setting (None: off): public-cloud requests go to the private authority.
        self.route = PublicCloudRoute.of(getattr(settings, "authority", None),
                                         getattr(settings, "route_public_cloud", False))
        if self.route is not None:
            log.info("routing Microsoft's public-cloud hosts to %s", self.route.private)
        self.accounts = AccountTable()
        self._open_url = open_url
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="authbroker-core")
        self._loaded = False
        self._state = Persistence(self.store, self.accounts, self.engine, self._run)
        self._removals: dict[str, int] = {}  # per account, bumped by removeAccount (_silent)
        self._load_lock = asyncio.Lock()
        self._inflight: dict[tuple[SilentKey, bool], asyncio.Future[Served]] = {}
        self._hot = HotTokens()
        self._sign_ins: set[signin.SignIn] = set()
        self.callers = RecentCallers()
        self.audit = audit_log  # None: no audit log (tests, embedders)
        self._routes: dict[broker1.AnyMethod, Route] = {
            broker1.UiMethod.SET_DEFAULT_ACCOUNT: self._on_set_default,
            broker1.UiMethod.GET_DEFAULT_ACCOUNT: self._on_get_default,
            broker1.UiMethod.GET_STATUS: self._on_status,
            broker1.Method.GET_ACCOUNTS: self._on_get_accounts,
            broker1.Method.ACQUIRE_TOKEN_SILENTLY: self._on_silent,
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY: self._on_interactive,
            broker1.Method.REMOVE_ACCOUNT: self._on_remove,
            broker1.Method.CANCEL_INTERACTIVE_FLOW: self._on_cancel,
            broker1.Method.GET_LINUX_BROKER_VERSION: self._on_version,
        }

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
            await self._state.start()
            self._loaded = True
            log.info("broker state loaded: %d account(s)", len(self.accounts))

    async def _persist(self, *, durable: bool = False) -> None:
        """Commit what changed (only those accounts) before the caller is answered."""
        await self._state.flush(durable=durable)

    async def aclose(self) -> None:
        for sign_in in list(self._sign_ins):
            sign_in.cancel()
        if self._loaded:
            await self._state.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.audit is not None:
            self.audit.close()

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(
        self, method: broker1.AnyMethod, request: broker1.Request, ctx: CallContext
    ) -> broker1.Result:
        await self.start()
        if method is not broker1.UiMethod.GET_STATUS:  # asking for the status is not news
            self.callers.seen(ctx, method, request)
        route = self._routes.get(method)
        if route is None:
            raise BrokerStatusError(
                broker1.Status.UNEXPECTED,
                f"{method} is not supported yet by authbroker",
                tag=f"core.unsupported.{method}",
            )
        return await route(_expect(request, broker1.METHODS[method].request), ctx)

    # Each route gets the request type that METHODS declares for its method.

    async def _on_set_default(
        self, request: broker1.SetDefaultAccountRequest, ctx: CallContext
    ) -> broker1.Result:
        chosen = self.accounts.find(request)
        await self.set_default_account(chosen)
        log.info("SetDefaultAccount %s: the default account is now %s", ctx.correlation_id,
                 chosen)
        return broker1.OkResult()

    async def _on_get_default(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        default = self.accounts.default
        return broker1.DefaultAccountResult(self.accounts.account(default) if default else None)

    async def _on_status(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        sign_ins = sorted(self._sign_ins, key=lambda s: s.started)
        return broker1.StatusResult(tuple(self.accounts.listed()), self.accounts.default,
                                    tuple(s.status() for s in sign_ins), self.callers.listed())

    async def _on_get_accounts(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        return broker1.AccountsResult(tuple(self.accounts.listed()))

    async def _on_silent(self, request: broker1.TokenRequest, ctx: CallContext) -> broker1.Result:
        return await self._audited(broker1.Method.ACQUIRE_TOKEN_SILENTLY, request.auth, ctx,
                                   self._acquire_silent(request.auth, ctx))

    async def _on_interactive(
        self, request: broker1.TokenRequest, ctx: CallContext
    ) -> broker1.Result:
        return await self._audited(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request.auth,
                                   ctx, self._signed_in(request.auth, ctx))

    async def _audited(self, method: broker1.Method, auth: broker1.AuthParameters,
                       ctx: CallContext, serving: Awaitable[Served]) -> broker1.TokenResult:
        """A token call, with its line in the audit log (handed out or refused)."""
        started = time.monotonic()
        try:
            result, how = await serving
        except Exception as exc:
            if self.audit is not None:
                hid = auth.account.home_account_id if auth.account else (  # a silent call's
                    self.accounts.default if method is broker1.Method.ACQUIRE_TOKEN_SILENTLY
                    else None)  # default account; a sign-in names none until it is done
                entry = self.accounts.entry(hid) if hid else None
                username = auth.account.username if auth.account else (
                    entry or {}).get("username")
                self.audit.refused(method, ctx, auth, audit.account_of(hid, username), exc,
                                   started)
            raise
        if self.audit is not None:
            self.audit.served(method, ctx, auth, result.account, how, started)
        return result

    async def _signed_in(self, auth: broker1.AuthParameters, ctx: CallContext) -> Served:
        return await self.acquire_interactive(auth, ctx), audit.SIGN_IN

    async def _on_remove(
        self, request: broker1.RemoveAccountRequest, ctx: CallContext
    ) -> broker1.Result:
        await self.remove_account(request.account.home_account_id)
        return broker1.OkResult()

    async def _on_cancel(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        self.cancel_interactive(ctx)
        return broker1.OkResult()

    async def _on_version(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        return broker1.VersionResult()

    # -- accounts -----------------------------------------------------------------------------

    async def set_default_account(self, home_account_id: str) -> None:
        """Make a signed-in account the default; it stays so until chosen otherwise or removed."""
        await self.start()
        self.accounts.choose_default(home_account_id)
        await self._persist(durable=True)

    async def remove_account(self, home_account_id: str) -> None:
        await self.start()
        self._removals[home_account_id] = self._removals.get(home_account_id, 0) + 1
        removed = await self._run(self.engine.remove_account, home_account_id)
        known = self.accounts.forget(home_account_id)
        self._state.touch(home_account_id)
        self._hot.forget_account(home_account_id)
        log.info("removed account %s (%s, %d cache entries)", home_account_id,
                 "known" if known else "unknown", removed)
        await self._persist(durable=True)

    # -- tokens -------------------------------------------------------------------------------

    async def acquire_silent(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        return (await self._acquire_silent(auth, ctx))[0]

    async def _acquire_silent(self, auth: broker1.AuthParameters, ctx: CallContext) -> Served:
        await self.start()
        auth = self._admit(auth)
        home_account_id = auth.account.home_account_id if auth.account else self.accounts.default
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
        key = SilentKey.of(auth, target.authority, home_account_id)
        if not force and key.challenge is None:
            hot = self._hot.get(key)
            if hot is not None:
                if self._state.pending:
                    await self._persist()
                return hot, audit.MEMO
        flight = (key, force)
        shared = self._inflight.get(flight)
        if shared is None:
            shared = asyncio.ensure_future(self._silent(auth, home_account_id, ctx, key))
            self._inflight[flight] = shared
            shared.add_done_callback(lambda _f: self._inflight.pop(flight, None))
        return await asyncio.shield(shared)

    async def _silent(
        self, auth: broker1.AuthParameters, home_account_id: str, ctx: CallContext,
        key: SilentKey,
    ) -> Served:
        removals = self._removals.get(home_account_id, 0)
        try:
            result, how = await self._run(self.engine.serve_silent, auth, home_account_id)
            # removed meanwhile: the refresh must not bring the account back
            if self._removals.get(home_account_id, 0) != removals:
                await self._run(self.engine.remove_account, home_account_id)
                raise BrokerStatusError(
                    broker1.Status.INTERACTION_REQUIRED,
                    "the account was signed out while its token was being refreshed",
                    tag="core.silent.removed",
                )
        except BrokerStatusError as exc:
            log.info("silent %s for %s: status %d (%s)", ctx.correlation_id, auth.client_id,
                     int(exc.status), exc.context)
            raise
        if result.account and result.account.home_account_id not in self.accounts:
            self.accounts.seen(result.account)
            self._state.touch(result.account.home_account_id)
        log.info("silent %s for %s: token for %s", ctx.correlation_id, auth.client_id,
                 list(auth.requested_scopes))
        self._hot.keep(key, result)
        await self._persist()
        return result, how

    async def acquire_interactive(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        await self.start()
        auth = self._admit(auth)
        mode = await self._run(signin.choose_mode, self.ui_mode)  # webbrowser may run xdg-settings
        target = self.engine.target(auth)
        claims = split_claims(auth.decoded_claims)
        # a fresh cache of its own: the account it signs in is known from the answer only
        app = await self._run(self.engine.app, auth.client_id, target, claims.capabilities)
        kwargs = {"open_url": self._open_url} if self._open_url else {}
        interaction = signin.Interaction(app, auth, ctx, self._executor, **kwargs)
        log.debug(
            "interactive %s: authority %s, scopes %s, prompt %r, hint %s, claims %r, query %s",
            ctx.correlation_id, auth.authority, list(auth.requested_scopes), auth.prompt,
            bool(auth.login_hint), auth.decoded_claims, sorted(auth.extra_query),
        )
        sign_in = signin.SignIn.of(ctx, interaction)
        self._sign_ins.add(sign_in)
        log.info("interactive %s for %s at %s (%s)", ctx.correlation_id, auth.client_id,
                 target.authority, mode)
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
        self.accounts.signed_in(result.account)
        if result.account:
            hid = result.account.home_account_id
            self._hot.keep(SilentKey.of(auth, target.authority, hid), result)
            # the sign-in's cache becomes the account's partition; the account's other
            # capability partitions get the new refresh token
            await self._run(self.engine.adopt, app, claims.capabilities, hid,
                            target.environment)
            self._state.touch(hid)
        log.info("interactive %s: signed in %s", ctx.correlation_id,
                 result.account.username if result.account else "?")
        await self._persist(durable=True)  # on disk before the caller has the token
        return result

    def _admit(self, auth: broker1.AuthParameters) -> broker1.AuthParameters:
        """A token request as served: PoP refused, the routing setting applied."""
        refuse_pop(auth)
        return self.route.apply(auth) if self.route is not None else auth

    def caller_left(self, sender: str) -> int:
        """``sender`` left the bus: cancel its running sign-ins at once; how many."""
        chosen = [s for s in self._sign_ins if sender and s.sender == sender]
        for sign_in in chosen:
            sign_in.cancel()
        if chosen:
            log.info("caller %s left: cancelling %d sign-in(s)", sender, len(chosen))
        return len(chosen)

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
