"""The broker: Broker1 calls dispatched to routes, each composed of the rooms that serve it.

``BrokerCore(store, settings)`` implements ``handler.Handler``: the D-Bus façade (service.py)
parses each call and replies; the broker answers a typed ``broker1`` result or raises
``BrokerStatusError``. Calls go through a table, method → coroutine, each route getting the
request type ``broker1.METHODS`` declares (a method without a route is "not supported yet");
a token call (or a signed request) gets its line in the audit log here. It only orchestrates:
the account table and the default account are ``accounts.py``'s, msal's applications and
per-account partitions ``msal_engine.py``'s; the silent path (the memo, identical calls
sharing one msal call, the removal guard) is ``silent.py``'s, the interactive one (sign-ins
run, listed, cancelled; the account adopted) ``interactive.py``'s over ``signin.py``'s flows,
and what a PoP request (``popParams``) adds (the account's key, each caller's SHR, the PoP
call after a sign-in, ``generateSignedHttpRequest``) ``pop_calls.py``'s over ``popkeys.py``.
What changed is committed (those accounts only, ``persistence.py``) before the caller is
answered (a failed save is retried by the next call). Every blocking call (store, msal,
network) runs in the broker's thread executor; the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from authbroker import broker1
from authbroker.config import Settings
from authbroker.daemon import audit, signin
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.callers import RecentCallers
from authbroker.daemon.device_calls import DeviceCalls
from authbroker.daemon.device_keys import DeviceKeyVault
from authbroker.daemon.handler import CallContext
from authbroker.daemon.interactive import SignIns
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import AccountStore, Persistence
from authbroker.daemon.pop_calls import PopCalls
from authbroker.daemon.popkeys import pop_request
from authbroker.daemon.prt_calls import PrtCalls
from authbroker.daemon.routing import PublicCloudRoute
from authbroker.daemon.silent import Served, SilentPath
from authbroker.daemon.store import Store
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
#: A route answers one method; its request is of the type METHODS declares for it.
Route = Callable[[Any, CallContext], Awaitable[broker1.Result]]


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
        self.engine = TokenEngine(getattr(settings, "authority", None), http_client=http_client)
        #: The routing setting (None: off): public-cloud requests go to the private authority.
        self.route = PublicCloudRoute.of(getattr(settings, "authority", None),
                                         getattr(settings, "route_public_cloud", False))
        if self.route is not None:
            log.info("routing Microsoft's public-cloud hosts to %s", self.route.private)
        self.accounts = AccountTable()
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="authbroker-core")
        self._loaded = False
        self._state = Persistence(self.store, self.accounts, self.engine, self._run)
        self._load_lock = asyncio.Lock()
        parts = (self.engine, self.accounts, self._state, self._run)
        self.pop = PopCalls(*parts)
        self.silent = SilentPath(*parts, self.pop.keys)
        self.sign_ins = SignIns(*parts, self._executor, self.silent.hot,
                                ui_mode=getattr(settings, "ui", None),
                                timeout=sign_in_timeout or signin.timeout_setting(),
                                open_url=open_url)
        #: The registered device (device_calls.py); its PRT is ``self.prt``'s, when there is one.
        self.devices = DeviceCalls(*parts, self.sign_ins, prt=lambda: getattr(self, "prt", None),
                                   vault=DeviceKeyVault(self.store.keys if self.store else None))
        #: The device's Primary Refresh Token (prt_calls.py): tokens for any app, SSO cookies.
        self.prt = PrtCalls(*parts, devices=lambda: self.devices)
        self.silent.prt_route = self.prt.serve
        self.callers = RecentCallers()
        self.audit = audit_log  # None: no audit log (tests, embedders)
        self._routes: dict[broker1.AnyMethod, Route] = {
            broker1.UiMethod.SET_DEFAULT_ACCOUNT: self._on_set_default,
            broker1.UiMethod.GET_DEFAULT_ACCOUNT: self._on_get_default,
            broker1.UiMethod.GET_STATUS: self._on_status,
            broker1.UiMethod.REGISTER_DEVICE: self._on_register_device,
            broker1.UiMethod.GET_DEVICE_STATUS: self._on_device_status,
            broker1.UiMethod.UNREGISTER_DEVICE: self._on_unregister_device,
            broker1.Method.GET_ACCOUNTS: self._on_get_accounts,
            broker1.Method.ACQUIRE_TOKEN_SILENTLY: self._on_silent,
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY: self._on_interactive,
            broker1.Method.REMOVE_ACCOUNT: self._on_remove,
            broker1.Method.CANCEL_INTERACTIVE_FLOW: self._on_cancel,
            broker1.Method.GET_LINUX_BROKER_VERSION: self._on_version,
            broker1.Method.GENERATE_SIGNED_HTTP_REQUEST: self._on_signed_http_request,
            broker1.Method.ACQUIRE_PRT_SSO_COOKIE: self._on_prt_sso_cookie,
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
            await self.devices.settle()
            await self.prt.start()
            self.devices.prts.soon()  # a device left without its PRT (a crash, a failure)
            self._loaded = True
            log.info("broker state loaded: %d account(s)", len(self.accounts))

    async def _persist(self, *, durable: bool = False) -> None:
        """Commit what changed (only those accounts) before the caller is answered."""
        await self._state.flush(durable=durable)

    async def aclose(self) -> None:
        self.sign_ins.cancel_all()
        self.prt.aclose()
        self.devices.prts.aclose()
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
        return broker1.StatusResult(tuple(self.accounts.listed()), self.accounts.default,
                                    self.sign_ins.statuses(), self.callers.listed())

    async def _on_register_device(self, request: broker1.RegisterDeviceRequest,
                                  ctx: CallContext) -> broker1.Result:
        return broker1.DeviceStatusResult(await self.devices.register(request, ctx))

    async def _on_device_status(self, request: broker1.Request,
                                ctx: CallContext) -> broker1.Result:
        await self.devices.settle(now_=True)  # keys in a keyring unlocked since: read them
        return broker1.DeviceStatusResult(self.devices.status())

    async def _on_unregister_device(self, request: broker1.UnregisterDeviceRequest,
                                    ctx: CallContext) -> broker1.Result:
        return await self.devices.unregister(request.local_only)

    async def _on_get_accounts(self, request: broker1.Request, ctx: CallContext) -> broker1.Result:
        return broker1.AccountsResult(tuple(self.accounts.listed()))

    async def _on_silent(self, request: broker1.TokenRequest, ctx: CallContext) -> broker1.Result:
        return await self._audited(broker1.Method.ACQUIRE_TOKEN_SILENTLY, request.auth, ctx,
                                   self._acquire_silent(request.auth, ctx))

    async def _on_interactive(
        self, request: broker1.TokenRequest, ctx: CallContext
    ) -> broker1.Result:
        result = await self._audited(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request.auth,
                                     ctx, self._signed_in(request.auth, ctx))
        if result.account is not None:  # the device's account without a PRT: ask for one
            self.devices.prts.soon(result.account.home_account_id)
        return result

    async def _audited(self, method: broker1.Method, auth: broker1.AuthParameters,
                       ctx: CallContext, serving: Awaitable[tuple[T, str]]) -> T:
        """A token call (or a signed request), with its line in the audit log (handed out or
        refused); the line's account is the result's (a TokenResult's) or the request's."""
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
            account = result.account if isinstance(result, broker1.TokenResult) else auth.account
            self.audit.served(method, ctx, auth, account, how, started)
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

    async def _on_signed_http_request(self, request: broker1.SignedHttpRequestRequest,
                                      ctx: CallContext) -> broker1.Result:
        """``generateSignedHttpRequest``: an SHR without ``at`` (pop_calls.py)."""
        signed = await self._audited(broker1.Method.GENERATE_SIGNED_HTTP_REQUEST,
                                     self.pop.request_auth(request), ctx,
                                     self.pop.sign_request(request.pop_params))
        log.info("generateSignedHttpRequest %s for %s: signed", ctx.correlation_id,
                 request.client_id)
        return broker1.SignedHttpRequestResult(signed)

    async def _on_prt_sso_cookie(self, request: broker1.PrtSsoCookieRequest,
                                 ctx: CallContext) -> broker1.Result:
        """``acquirePrtSsoCookie``: the browser SSO cookie from the device's PRT (prt_calls)."""
        default = self.accounts.default
        account = request.account or (self.accounts.account(default) if default else None)
        auth = broker1.AuthParameters(client_id=request.client_id, requested_scopes=(),
                                      authority=request.authority, account=account)
        return await self._audited(broker1.Method.ACQUIRE_PRT_SSO_COOKIE, auth, ctx,
                                   self.prt.sso_cookie(request))

    # -- accounts -----------------------------------------------------------------------------

    async def set_default_account(self, home_account_id: str) -> None:
        """Make a signed-in account the default; it stays so until chosen otherwise or removed."""
        await self.start()
        self.accounts.choose_default(home_account_id)
        await self._persist(durable=True)

    async def remove_account(self, home_account_id: str) -> None:
        await self.start()
        self.silent.removing(home_account_id)  # a refresh in flight must not bring it back
        removed = await self._run(self.engine.remove_account, home_account_id)
        known = self.accounts.forget(home_account_id)
        self._state.touch(home_account_id)
        self.silent.forget(home_account_id)
        self.pop.forget(home_account_id)
        self.prt.removed(home_account_id)  # its PRT went with its tokens (engine.remove_account)
        log.info("removed account %s (%s, %d cache entries)", home_account_id,
                 "known" if known else "unknown", removed)
        await self._persist(durable=True)

    # -- tokens -------------------------------------------------------------------------------

    async def acquire_silent(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        return (await self._acquire_silent(auth, ctx))[0]

    async def _acquire_silent(self, auth: broker1.AuthParameters, ctx: CallContext) -> Served:
        """Silent: the memo or a shared msal call (silent.py); a PoP request's key is looked
        up first and each caller signs its own SHR (pop_calls.py)."""
        await self.start()
        auth = self._admit(auth)
        home_account_id = auth.account.home_account_id if auth.account else self.accounts.default
        if not home_account_id:
            raise BrokerStatusError(
                broker1.Status.INTERACTION_REQUIRED,
                "no account is signed in (or none is the default); sign in interactively",
                tag="core.silent.no_account",
            )
        key = self.silent.key(auth, home_account_id, ctx)
        pop = auth.pop_params
        pop_key = None if pop is None else await self.pop.known_key(pop, home_account_id)
        fetched = await self.silent.serve(auth, home_account_id, ctx, key, pop_key)
        return self.pop.for_caller(fetched, pop)

    async def acquire_interactive(
        self, auth: broker1.AuthParameters, ctx: CallContext
    ) -> broker1.TokenResult:
        """A sign-in (interactive.py); a PoP request is then answered by a silent call for a
        PoP-bound token over the account signed in (pop_calls.py)."""
        await self.start()
        auth = self._admit(auth)
        result = await self.sign_ins.sign_in(auth, ctx)
        if auth.pop_params is not None:
            return (await self._acquire_silent(self.pop.after_sign_in(auth, result), ctx))[0]
        return result

    def _admit(self, auth: broker1.AuthParameters) -> broker1.AuthParameters:
        """A token request as served: its ``popParams`` checked (popkeys.pop_request), the
        routing setting applied."""
        auth = pop_request(auth)
        return self.route.apply(auth) if self.route is not None else auth

    # -- interactive sign-ins -----------------------------------------------------------------

    def caller_left(self, sender: str) -> int:
        """``sender`` left the bus: cancel its running sign-ins at once; how many."""
        return self.sign_ins.caller_left(sender)

    def cancel_interactive(self, ctx: CallContext) -> int:
        """Cancel the caller's running sign-ins (same correlation id, else same connection)."""
        return self.sign_ins.cancel(ctx)

    @property
    def _sign_ins(self) -> set[signin.SignIn]:
        """The running sign-ins (tests look)."""
        return self.sign_ins.running

    @property
    def _open_url(self) -> Callable[[str], bool] | None:
        """How a browser sign-in opens its URL (None: ``webbrowser``; tests set a person)."""
        return self.sign_ins.open_url

    @_open_url.setter
    def _open_url(self, open_url: Callable[[str], bool] | None) -> None:
        self.sign_ins.open_url = open_url
