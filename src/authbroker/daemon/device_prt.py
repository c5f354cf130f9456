"""Getting the registered device its PRT: at registration, and again whenever it has none.

A device is committed before its PRT is asked for, and a PRT can fail, expire or go with
``removeAccount``; the issue's promise is that "after registration a sign-in yields a PRT". So
:class:`PrtStarter` asks for one (``core.prt.establish``, the PRT request of [MS-OAPXBC] with a
refresh token) at registration, at the daemon's start and after each interactive sign-in of the
device's account, whenever that account has no live PRT and the device is not refused. The
refresh token is the Microsoft Authentication Broker client's when the account has one, else
any client's (the authority checks it as a redemption would: live, that client or its family).
A failure is logged and waits for the next sign-in; one request at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msal

from authbroker.daemon.device import DeviceIdentity
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Run
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

#: The Microsoft Authentication Broker (a family client): the registration's sign-in.
BROKER_CLIENT_ID = "29d9ed98-a469-4536-ade2-f981bc1d605e"
_RT = msal.TokenCache.CredentialType.REFRESH_TOKEN


class PrtLike(Protocol):
    """The part of ``core.prt`` (``prt_calls.PrtCalls``) registration uses."""

    async def establish(self, device: DeviceIdentity, refresh_token: str,
                        client_id: str) -> Any: ...

    def state(self, home_account_id: str) -> dict[str, Any]: ...

    async def forget(self, home_account_id: str | None = None) -> None: ...


class PrtStarter:
    """Asks for the device's PRT when it has none (see the module docstring)."""

    def __init__(self, engine: TokenEngine, run: Run, prt: Callable[[], PrtLike | None],
                 device: Callable[[], DeviceIdentity | None]) -> None:
        self.engine, self._run, self._prt, self._device = engine, run, prt, device
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def wanted(self, home_account_id: str | None = None) -> DeviceIdentity | None:
        """The device, if it is registered and its account (``home_account_id``, if given)
        has no live PRT; else None."""
        device, prt = self._device(), self._prt()
        if device is None or prt is None or device.state != "registered":
            return None
        if home_account_id is not None and device.home_account_id != home_account_id:
            return None
        try:
            known = prt.state(device.home_account_id).get("prt")
        except Exception as exc:  # the PRT side's trouble: ask again next time
            log.error("the PRT state is unreadable: %s", type(exc).__name__)
            return None
        return device if known in ("none", "expired") else None

    def soon(self, home_account_id: str | None = None) -> None:
        """In the background: a PRT for the device if it wants one (after a sign-in of
        ``home_account_id``; None: at the start)."""
        if self.wanted(home_account_id) is None:
            return
        task = asyncio.get_running_loop().create_task(self._again(home_account_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _again(self, home_account_id: str | None) -> None:
        async with self._lock:
            device = self.wanted(home_account_id)  # another task may have got it meanwhile
            if device is not None:
                log.info("device %s has no PRT: asking for one", device.device_id)
                await self.establish(device)

    async def establish(self, device: DeviceIdentity) -> bool:
        """One PRT request with the account's refresh token; False (logged) when there is no
        PRT support, no refresh token, or the authority refused."""
        prt = self._prt()
        if prt is None:
            log.warning("device %s registered, but this broker has no PRT support: no PRT "
                        "requested", device.device_id)
            return False
        client_id, token = await self._run(self._refresh_token, device.home_account_id)
        if not token:
            log.warning("device %s: its account has no refresh token: no PRT (the next "
                        "sign-in tries again)", device.device_id)
            return False
        try:
            await prt.establish(device, token, client_id)
        except BrokerStatusError as exc:
            log.warning("device %s: the PRT request failed (the next sign-in tries again): %s",
                        device.device_id, exc.context)
            return False
        return True

    def _refresh_token(self, home_account_id: str) -> tuple[str, str]:
        """In the executor: (client id, refresh token) of the account, the broker client's
        first; ("", "") if it has none."""
        found: tuple[str, str] = ("", "")
        query = {"home_account_id": home_account_id}
        with self.engine.account_lock(home_account_id):
            for partition in self.engine.tokens(home_account_id).partitions.values():
                for entry in partition.search(_RT, query=query):
                    secret, client_id = entry.get("secret"), entry.get("client_id")
                    if not (isinstance(secret, str) and secret and isinstance(client_id, str)):
                        continue
                    if client_id == BROKER_CLIENT_ID:
                        return client_id, secret
                    if not found[1]:
                        found = (client_id, secret)
        return found

    def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
