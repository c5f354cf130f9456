"""Interactive sign-in: the system browser with a loopback redirect, else the device-code flow.

The browser flow is msal's authorization-code flow driven by hand so it can be cancelled:
``initiate_auth_code_flow`` (PKCE, nonce, ``response_mode=form_post``), our own aiohttp listener
on 127.0.0.1 as the ``http://localhost:PORT`` redirect (``loopback.py``), the URL opened with
``webbrowser`` (which honours ``$BROWSER``), then ``acquire_token_by_auth_code_flow``. The
device-code flow polls with msal one request at a time, sleeping on the event loop in between.
Either way a :class:`SignIn` races the flow against cancellation and a deadline, and the
listener closes whatever happens. Blocking msal calls run in the given executor. The desktop
notification of a device code is ``notify.py``'s.

A browser "can open" when ``$BROWSER`` is set, or ``DISPLAY``/``WAYLAND_DISPLAY`` is set and
``webbrowser`` finds one. ``AUTHBROKER_UI=browser|device-code`` forces one flow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import webbrowser
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

import msal

from authbroker import broker1, config
from authbroker.broker1 import DeviceCodePrompt
from authbroker.daemon.handler import CallContext
from authbroker.daemon.loopback import LoopbackListener
from authbroker.daemon.notify import notify_quietly
from authbroker.daemon.results import error_from_result
from authbroker.daemon.routing import authority_query, msal_scopes, split_claims
from authbroker.errors import BrokerStatusError, ConfigurationError

log = logging.getLogger(__name__)

BROWSER = "browser"
DEVICE_CODE = "device-code"
MODES = (BROWSER, DEVICE_CODE)
DEFAULT_TIMEOUT_S = 240.0
ANNOUNCE_TIMEOUT_S = 5.0
CLEANUP_TIMEOUT_S = 2.0
_PENDING = frozenset({"authorization_pending", "slow_down"})

T = TypeVar("T")


def _raise_if_cancelled() -> None:
    """Honour a cancel that something below us swallowed (it stays counted on the task)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


#: webbrowser builds its browser list in place on first use (CPython publishes an empty list,
#: then fills it): a second thread in that window finds no browser. Lookups take turns.
_BROWSER_LOOKUP = threading.Lock()


def _browser_found() -> bool:
    with _BROWSER_LOOKUP:
        try:
            webbrowser.get()
        except webbrowser.Error:
            return False
    return True


def can_open_browser() -> bool:
    if os.environ.get("BROWSER"):
        return True
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return _browser_found()


def open_browser(url: str) -> bool:
    """``webbrowser.open``, safe to call from several threads at once (concurrent sign-ins)."""
    return _browser_found() and webbrowser.open(url)


def timeout_setting() -> float:
    """Seconds a sign-in may take (``sign_in_timeout``), below the clients' own call timeout."""
    raw = config.setting("sign_in_timeout")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < broker1.CLIENT_CALL_TIMEOUT_S:
        raise ConfigurationError(
            "sign_in_timeout must be a number of seconds below "
            f"{broker1.CLIENT_CALL_TIMEOUT_S:.0f}, not {raw!r}",
            hint=f"fix {config.SIGN_IN_TIMEOUT} or sign_in_timeout in the config file",
        )
    return value


def choose_mode(forced: str | None) -> str:
    if forced:
        if forced not in MODES:
            raise BrokerStatusError(
                broker1.Status.INCORRECT_CONFIGURATION,
                f"{config.UI} must be one of {', '.join(MODES)}, not {forced!r}",
                tag="ui.mode",
            )
        return forced
    return BROWSER if can_open_browser() else DEVICE_CODE


class SignIn:
    """One running interactive sign-in; ``cancel()`` makes it end with status 7.

    It knows who asked (bus name, pid, client id) and, once the device-code flow has one, its
    prompt, so that ``authbroker status`` can show a person the code the caller may not.
    """

    def __init__(self, correlation_id: str, sender: str, *, pid: int | None = None,
                 interaction: Interaction | None = None) -> None:
        self.correlation_id = correlation_id
        self.sender = sender
        self.pid = pid
        self.interaction = interaction
        self.started = time.time()
        self._cancelled = asyncio.Event()

    @classmethod
    def of(cls, ctx: CallContext, interaction: Interaction) -> SignIn:
        return cls(ctx.correlation_id, ctx.sender, pid=ctx.pid, interaction=interaction)

    @property
    def client_id(self) -> str:
        return self.interaction.auth.client_id if self.interaction else ""

    @property
    def prompt(self) -> DeviceCodePrompt | None:
        """The device code the person must enter, while the device-code flow waits for it."""
        return self.interaction.prompt if self.interaction else None

    def status(self) -> broker1.SignInStatus:
        return broker1.SignInStatus(
            correlation_id=self.correlation_id, client_id=self.client_id, sender=self.sender,
            pid=self.pid, started_on=self.started, device_code=self.prompt,
        )

    def cancel(self) -> None:
        self._cancelled.set()

    async def run(self, flow: Awaitable[T], timeout: float) -> T:
        """The flow's result, or BrokerStatusError on cancel (7) or timeout; cleans up."""
        task = asyncio.ensure_future(flow)
        cancel = asyncio.ensure_future(self._cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {task, cancel}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
        finally:
            task.cancel()
            cancel.cancel()
            _keep_until_done(task)
            _keep_until_done(cancel)
            # The answer must not wait on a flow that ignores its cancellation (a library
            # that swallows CancelledError): it gets a bounded grace period, then is left.
            _, stuck = await asyncio.wait({task, cancel}, timeout=CLEANUP_TIMEOUT_S)
            if task in stuck:
                log.error("sign-in %s: the flow did not stop when cancelled", self.correlation_id)
        if cancel in done:
            log.info("sign-in %s cancelled", self.correlation_id)
            raise BrokerStatusError(
                broker1.Status.USER_CANCELED, "the sign-in was cancelled", tag="ui.cancelled"
            )
        log.warning("sign-in %s timed out after %.0f s", self.correlation_id, timeout)
        raise BrokerStatusError(
            broker1.Status.UNEXPECTED,
            f"the sign-in did not finish within {timeout:.0f} s; try again",
            tag="ui.timeout",
        )


class Interaction:
    """The interactive flows for one request, on one msal application."""

    def __init__(
        self,
        app: msal.PublicClientApplication,
        auth: broker1.AuthParameters,
        ctx: CallContext,
        executor: Executor,
        *,
        open_url: Callable[[str], bool] = open_browser,
    ) -> None:
        self.app = app
        self.auth = auth
        self.ctx = ctx
        self.executor = executor
        self.open_url = open_url
        self.scopes = msal_scopes(auth.requested_scopes)
        self.claims = split_claims(auth.decoded_claims)
        self.query = authority_query(auth)
        self.login_hint = auth.login_hint or (auth.account.username if auth.account else "")
        #: The device-code prompt, once the device-code flow has one.
        self.prompt: DeviceCodePrompt | None = None

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))

    async def sign_in(self, mode: str, *, forced: bool = False) -> dict[str, Any]:
        if mode == BROWSER:
            result = await self.browser()
            if result is not None:
                return result
            if forced:
                raise BrokerStatusError(
                    broker1.Status.UNEXPECTED,
                    f"no browser could be opened and {config.UI}=browser forbids the "
                    f"device-code flow; set BROWSER or unset {config.UI}",
                    tag="ui.browser.unavailable",
                )
            log.warning("no browser could be opened; falling back to the device-code flow")
        return await self.device_code()

    # -- browser ------------------------------------------------------------------------------

    async def browser(self) -> dict[str, Any] | None:
        """msal's result, or None when no browser could be opened."""
        listener = LoopbackListener()
        await listener.start()
        try:
            prompt = self.auth.prompt or (None if self.login_hint else "select_account")
            flow = self.app.initiate_auth_code_flow(
                self.scopes,
                redirect_uri=f"http://localhost:{listener.port}",
                prompt=prompt,
                login_hint=self.login_hint or None,
                claims_challenge=self.claims.challenge,
                response_mode="form_post",
            )
            listener.state = flow["state"]
            url = flow["auth_uri"]
            if self.query:
                url += ("&" if "?" in url else "?") + urlencode(self.query)
            log.info("sign-in %s: opening the browser", self.ctx.correlation_id)
            try:
                opened = await self._run(self.open_url, url)
            except Exception as exc:  # a broken $BROWSER is "no browser", not a failed call
                log.warning("the browser failed to open: %r", exc)
                opened = False
            if not opened:
                return None
            response = await listener.response()
        finally:
            await listener.close()
        if response.get("error") == "access_denied":
            raise BrokerStatusError(
                broker1.Status.USER_CANCELED,
                f"the sign-in was declined: {response.get('error_description', '')}"[:500],
                tag="ui.browser.denied",
            )
        if "error" in response:
            raise error_from_result(response, "ui.browser.authorize")
        # Extra parameters go on the authorize URL only: msal would key the cached tokens by
        # any extra token-request field (its ext_cache_key) and silent calls would miss them.
        return await self._run(self.app.acquire_token_by_auth_code_flow, flow, response)

    # -- device code --------------------------------------------------------------------------

    async def device_code(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"params": dict(self.query)} if self.query else {}
        flow = await self._run(
            self.app.initiate_device_flow,
            self.scopes,
            claims_challenge=self.claims.challenge,
            **extra,
        )
        if "user_code" not in flow:
            raise error_from_result(flow, "ui.device.initiate")
        prompt = DeviceCodePrompt(
            verification_uri=str(flow.get("verification_uri") or flow.get("verification_url")),
            user_code=str(flow["user_code"]),
            message=str(
                flow.get("message")
                or f"To sign in, open {flow.get('verification_uri')} and enter the code "
                f"{flow['user_code']}"
            ),
            expires_on=float(flow.get("expires_at") or time.time() + 900),
        )
        log.warning("sign-in %s: %s", self.ctx.correlation_id, prompt.message)
        self.prompt = prompt
        await self._announce(prompt)
        while True:
            _raise_if_cancelled()
            result: dict[str, Any] = await self._run(
                self.app.acquire_token_by_device_flow,
                flow,
                claims_challenge=self.claims.challenge,
                exit_condition=lambda _flow: True,
            )
            if result.get("error") not in _PENDING:
                return result
            if time.time() >= flow["expires_at"]:
                return {"error": "expired_token", "error_description": "the code expired"}
            _raise_if_cancelled()
            await asyncio.sleep(float(flow.get("interval", 5)))

    async def _announce(self, prompt: DeviceCodePrompt) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that lands
        # as the awaited call finishes, and the sign-in then polls on, uncancellable.
        try:
            async with asyncio.timeout(ANNOUNCE_TIMEOUT_S):
                await self.ctx.announce_device_code(prompt)
        except Exception as exc:  # the prompt also goes to the log and the desktop
            log.warning("could not show the device-code prompt to the caller: %r", exc)
        # The notification runs in a task of its own, shielded: a cancel of the sign-in must
        # never land inside jeepney's connection set-up or teardown, which swallow it.
        notification = asyncio.ensure_future(notify_quietly(prompt, ANNOUNCE_TIMEOUT_S))
        await asyncio.shield(_keep_until_done(notification))


_background: set[asyncio.Future[Any]] = set()


def _keep_until_done(fut: asyncio.Future[T]) -> asyncio.Future[T]:
    """Hold a reference to a task nobody awaits any more, and collect its outcome."""
    _background.add(fut)
    fut.add_done_callback(_background.discard)
    fut.add_done_callback(lambda f: f.cancelled() or f.exception())
    return fut
