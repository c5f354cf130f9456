"""The broker's Primary Refresh Tokens: kept, renewed, exchanged for any app's tokens, SSO cookies.

:class:`PrtCalls` (the core's ``core.prt``) owns the PRT of the account that registered the
device (``core.devices``, ``device_calls.py``); the protocol is ``prt.py``'s. The PRT lives in
that account's token snapshot (``prt_kept.py``: sealed with the account's tokens, so
``removeAccount`` drops it with them) and is committed durably before it is used or the caller
is answered; an exchange's answer joins msal's cache as ``prt_tokens.py`` says.

- :meth:`PrtCalls.establish`: the PRT request with the registration's refresh token.
- :meth:`PrtCalls.serve`: the silent path's last resort (``silent.py``). When no per-app token
  serves a request (status 2) and the account has a live PRT on a registered device, one
  exchange for the request's client id and scopes (its claims; a PoP request's ``req_cnf``);
  the answer joins that client's msal partition, so the next call is a memo or cache hit.
- :meth:`PrtCalls.sso_cookie`: ``acquirePrtSsoCookie``'s ``x-ms-RefreshTokenCredential``, its
  nonce the ``sso_nonce`` of the request's ``ssoUrl`` when there is one, else a fresh one.
- Renewal: on use when the PRT was last renewed more than :attr:`PrtCalls.renew_after_s` ago
  (4 h), and by a timer at half its remaining life; the new PRT is saved before it is used.
- A refusal (AADSTS135011 device disabled, 50155 deleted, 70008 expired) marks the device
  (``core.devices.mark``), drops the PRT, and the caller gets today's answer (status 2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from authbroker import broker1
from authbroker.daemon import audit, results
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.device import DeviceIdentity
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.daemon.popkeys import PopKey
from authbroker.daemon.prt import (
    COOKIE_NAME,
    PrtClient,
    PrtError,
    PrtState,
    sso_nonce,
    token_endpoint,
)
from authbroker.daemon.prt_kept import KeptPrts
from authbroker.daemon.prt_tokens import cache_answer, exchange_request
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

#: A PRT last renewed longer ago than this is renewed before it is used (Windows: 4 h).
RENEW_AFTER_S = 4 * 3600.0
#: The renewal timer never fires sooner than this, and retries after a failure this late.
MIN_TIMER_S = 60.0
RETRY_S = 300.0
#: What a silent call served from the PRT says in the audit log.
SERVED = audit.PRT
#: A silent call served the PRT way: the token, how, and the PoP key it is bound to.
Fetched = tuple[broker1.TokenResult, str, PopKey | None]


class Devices(Protocol):
    """The part of ``core.devices`` (``device_calls.DeviceCalls``) the PRT side uses."""

    @property
    def identity(self) -> DeviceIdentity | None: ...

    def mark(self, state: str) -> None: ...


class PrtCalls:
    """The PRT side of one broker. ``devices`` gives ``core.devices`` (None: not composed)."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run, *, devices: Callable[[], Devices | None] = lambda: None,
                 client: PrtClient | None = None,
                 renew_after_s: float = RENEW_AFTER_S) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self._devices = devices
        self.client = client or PrtClient()
        self.renew_after_s = renew_after_s
        self.exchanges = 0  # exchanges answered (measurements, tests)
        self.kept = KeptPrts(engine, accounts, state, run)
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the contract (issue 10, §3) ----------------------------------------------------------

    async def establish(self, device: DeviceIdentity, refresh_token: str,
                        client_id: str) -> PrtState:
        """The PRT request with the registration's refresh token (of ``client_id``); the PRT
        is saved durably before this returns."""
        if device.home_account_id not in self.accounts:
            raise BrokerStatusError(broker1.Status.UNEXPECTED,
                                    "the device's account is not signed in to the broker",
                                    tag="prt.establish.account")
        try:
            state: PrtState = await self._ask(device, self.client.request_prt, device,
                                              refresh_token, client_id)
        except PrtError as exc:
            raise results.error_from_result(exc.body, "prt.establish") from None
        await self._keep(state)
        log.info("device %s: a PRT for %s (expires %d)", device.device_id,
                 device.home_account_id, state.expires_at)
        return state

    def state(self, home_account_id: str) -> dict[str, Any]:
        """``{"prt": "active"|"none"|"expired"|"refused", "expiresOn", "renewedAt"}``."""
        known = self.kept.peek(home_account_id)  # a small sealed row; status is rare
        if known is not None:
            fields = known.status()
            device = self._device()
            if device is not None and device.state != "registered":
                fields["prt"] = "refused"
            return fields
        return {"prt": self.kept.outcomes.get(home_account_id, "none"), "expiresOn": None,
                "renewedAt": None}

    async def forget(self, home_account_id: str | None = None) -> None:
        """Drop the account's PRT (None: every PRT, as ``unregister`` does)."""
        targets = {home_account_id} if home_account_id \
            else set(self.kept.states) | set(self.kept.outcomes)
        device = self._device()
        if home_account_id is None and device is not None:
            targets.add(device.home_account_id)
        for hid in sorted(targets):
            await self._drop(hid, None)

    def removed(self, home_account_id: str) -> None:
        """``removeAccount``: the PRT went with the account's tokens; forget it here too."""
        timer = self._timers.pop(home_account_id, None)
        if timer is not None:
            timer.cancel()
        self.kept.forget(home_account_id)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """After the store is loaded: the device account's PRT read, its renewal timed."""
        device = self._device()
        if device is None or device.state != "registered":
            return
        state, _read = await self.kept.load(device.home_account_id)
        if state is not None:
            self._schedule(state)

    def aclose(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    # -- silent calls -------------------------------------------------------------------------

    async def serve(self, auth: broker1.AuthParameters, home_account_id: str,
                    fallback: BrokerStatusError) -> Fetched:
        """``auth`` served by one exchange of the account's PRT, or ``fallback`` raised
        (no device, no live PRT, or a refusal: the caller gets today's answer)."""
        if fallback.status != broker1.Status.INTERACTION_REQUIRED:
            raise fallback
        device = self._device_for(home_account_id)
        if device is None or not _same_directory(self.engine.target(auth).authority, device):
            raise fallback
        state = await self._live(home_account_id)
        if state is None:
            raise fallback
        try:
            state = await self._fresh(device, state)
            pop_key = (await self._run(self.engine.pop_key, home_account_id)
                       if auth.pop_params is not None else None)
            response = await self._ask(device, self._exchange, auth, device, state, pop_key)
        except PrtError as exc:
            if exc.refusal:
                raise _with_note(fallback, exc) from None
            raise results.error_from_result(exc.body, "prt.exchange") from None
        self.exchanges += 1
        result = await self._run(cache_answer, self.engine, auth, home_account_id, response,
                                 pop_key)
        log.info("silent for %s: served from the device's PRT", auth.client_id)
        return result, SERVED, pop_key

    def _exchange(self, auth: broker1.AuthParameters, device: DeviceIdentity,
                  state: PrtState, pop_key: PopKey | None) -> dict[str, Any]:
        """In the executor: the exchange for the request's client id, scopes and claims."""
        scope, extra = exchange_request(auth, pop_key)
        return self.client.exchange(state, token_endpoint(device), auth.client_id, scope, extra)

    # -- acquirePrtSsoCookie ------------------------------------------------------------------

    async def sso_cookie(
        self, request: broker1.PrtSsoCookieRequest
    ) -> tuple[broker1.PrtSsoCookieResult, str]:
        """The SSO cookie for the request's account (else the default one); status 17
        without a registered device and a live PRT."""
        hid = (request.account.home_account_id if request.account
               else self.accounts.default) or ""
        device = self._device_for(hid)
        state = None if device is None else await self._live(hid)
        if device is None or state is None:
            raise _not_registered("no device is registered for this account, or it has no "
                                  "usable PRT: run 'authbroker device register'")
        try:
            state = await self._fresh(device, state)
            cookie = await self._ask(device, self.client.sso_cookie, state,
                                     token_endpoint(device), sso_nonce(request.sso_url))
        except PrtError as exc:
            if exc.refusal:
                raise _not_registered(f"the authority refused the device's PRT "
                                      f"(AADSTS{exc.code}): register the device again") from None
            raise results.error_from_result(exc.body, "prt.cookie") from None
        account = self.accounts.account(hid) if hid in self.accounts else request.account
        return broker1.PrtSsoCookieResult(account, COOKIE_NAME, cookie), SERVED

    # -- the PRT's state ----------------------------------------------------------------------

    def _device(self) -> DeviceIdentity | None:
        devices = self._devices()
        return devices.identity if devices is not None else None

    def _device_for(self, home_account_id: str) -> DeviceIdentity | None:
        """The registered device whose PRT is this account's, if any."""
        device = self._device()
        if device is None or device.state != "registered" \
                or device.home_account_id != home_account_id:
            return None
        return device

    async def _live(self, home_account_id: str) -> PrtState | None:
        """The account's PRT if it is alive and of the registered device."""
        state, read = await self.kept.load(home_account_id)
        if state is not None and read:
            self._schedule(state)
        device = self._device()
        if state is None or device is None or state.device_id != device.device_id:
            return None
        if not state.live():
            await self._drop(home_account_id, "expired")
            return None
        return state

    async def _keep(self, state: PrtState) -> None:
        """Save a (new) PRT durably, then time its renewal."""
        await self.kept.keep(state)
        self._schedule(state)

    async def _drop(self, home_account_id: str, outcome: str | None) -> None:
        timer = self._timers.pop(home_account_id, None)
        if timer is not None:
            timer.cancel()
        await self.kept.drop(home_account_id, outcome)

    async def _ask(self, device: DeviceIdentity, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn`` (a blocking call to the authority) in the executor; a refusal marks the
        device and drops the PRT before the PrtError goes on; no network: status 3/5."""
        try:
            return await self._run(fn, *args)
        except PrtError as exc:
            if exc.refusal:
                await self._refused(device, exc)
            raise
        except requests.exceptions.RequestException as exc:
            raise results.unreachable(exc, device.authority, "prt.network") from None

    async def _refused(self, device: DeviceIdentity, exc: PrtError) -> None:
        what = exc.refusal
        log.warning("device %s: the authority refused its PRT (AADSTS%d): %s",
                    device.device_id, exc.code, what)
        devices = self._devices()
        if what in ("disabled", "deleted") and devices is not None:
            devices.mark(str(what))
        await self._drop(device.home_account_id, "expired" if what == "expired" else "refused")

    # -- renewal ------------------------------------------------------------------------------

    async def _fresh(self, device: DeviceIdentity, state: PrtState, *,
                     force: bool = False) -> PrtState:
        """``state``, renewed first if it was last renewed :attr:`renew_after_s` ago."""
        hid = state.home_account_id
        lock = self._locks.setdefault(hid, asyncio.Lock())
        async with lock:
            current = self.kept.states.get(hid, state)
            if not force and time.time() - current.renewed_at < self.renew_after_s:
                return current
            renewed: PrtState = await self._ask(device, self.client.renew, current,
                                                token_endpoint(device))
            await self._keep(renewed)  # saved before it is used
            log.info("device %s: PRT renewed (expires %d)", device.device_id,
                     renewed.expires_at)
            return renewed

    def _schedule(self, state: PrtState, delay: float | None = None) -> None:
        """The renewal timer: at half the PRT's remaining life."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        hid = state.home_account_id
        old = self._timers.pop(hid, None)
        if old is not None:
            old.cancel()
        if delay is None:
            delay = max(MIN_TIMER_S, (state.expires_at - time.time()) / 2)
        self._timers[hid] = loop.call_later(delay, self._on_timer, hid)

    def _on_timer(self, home_account_id: str) -> None:
        self._timers.pop(home_account_id, None)
        task = asyncio.ensure_future(self._timed_renewal(home_account_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _timed_renewal(self, home_account_id: str) -> None:
        state = self.kept.states.get(home_account_id)
        device = self._device_for(home_account_id)
        if state is None or device is None:
            return
        try:
            await self._fresh(device, state, force=True)
        except Exception as exc:  # a timer has nobody to tell: logged, tried again later
            log.warning("device %s: timed PRT renewal failed (%s)", device.device_id,
                        exc if isinstance(exc, PrtError) else type(exc).__name__)
            if home_account_id in self.kept.states:
                self._schedule(self.kept.states[home_account_id], RETRY_S)


def _same_directory(authority: str, device: DeviceIdentity) -> bool:
    """Whether a request's authority is the device's host, at its tenant or a tenant-less
    segment (``organizations``, ``common``): only there does its PRT serve."""
    url, home = urlsplit(authority), urlsplit(device.authority)
    tenant = url.path.strip("/").split("/")[0].lower()
    return (url.hostname or "").lower() == (home.hostname or "").lower() and tenant in (
        device.tenant_id.lower(), "organizations", "common", home.path.strip("/").lower())


def _with_note(fallback: BrokerStatusError, exc: PrtError) -> BrokerStatusError:
    """Today's answer, saying why the device's PRT did not serve it."""
    why = "it has expired or was revoked" if exc.refusal == "expired" \
        else f"the device is {exc.refusal} at the authority"
    return BrokerStatusError(
        fallback.status,
        f"{fallback.context} (the device's PRT was refused, AADSTS{exc.code}: {why}; "
        "register the device again)"[:1000],
        error_code=fallback.error_code or exc.code, tag=fallback.tag,
        sub_status=fallback.sub_status)


def _not_registered(why: str) -> BrokerStatusError:
    return BrokerStatusError(broker1.Status.DEVICE_NOT_REGISTERED, why,
                             tag="prt.cookie.device")
