"""``AsyncBrokerClient``: the asyncio Broker1 client (a jeepney router per event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from typing import Any

from jeepney import MatchRule, Message
from jeepney.bus_messages import message_bus
from jeepney.io import asyncio as jasyncio
from jeepney.io.common import RouterClosed

from authbroker import broker1
from authbroker.client.messages import (
    DeviceCodeCallback,
    R,
    _ClientSettings,
    log,
    print_device_code,
)
from authbroker.errors import BrokerProtocolError, BrokerUnavailableError


class AsyncBrokerClient(_ClientSettings):
    """The asyncio twin of :class:`BrokerClient` (``async with``, or ``await aclose()``)."""

    _conn: jasyncio.DBusConnection | None = None
    _router: jasyncio.DBusRouter | None = None
    _watch: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncBrokerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        router, conn, self._router, self._conn = self._router, self._conn, None, None
        watch, self._watch = self._watch, None
        if watch is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be gone (closed already)
                watch.cancel()
        if router is not None:
            with contextlib.suppress(Exception):
                await router.__aexit__(None, None, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connection(self) -> jasyncio.DBusRouter:
        if self._router is None:
            try:
                conn = await jasyncio.open_dbus_connection(self.bus)
            except (OSError, KeyError, ValueError, EOFError, TimeoutError) as exc:
                raise self.messages.no_bus(exc) from None
            if self._router is not None:  # a concurrent first call connected meanwhile
                await conn.close()
                return self._router
            self._conn, self._router = conn, jasyncio.DBusRouter(conn)
            self._watch = asyncio.create_task(self._close_with_loop(self._conn))
        return self._router

    async def _close_with_loop(self, conn: jasyncio.DBusConnection) -> None:
        """Close ``conn`` when its event loop ends (``asyncio.run`` cancels every task): a
        connection belongs to one loop, and the next loop opens its own."""
        try:
            await asyncio.sleep(1e9)  # a timer: the loop keeps this task alive until it ends
        finally:
            if self._conn is conn:
                self._router = self._conn = self._watch = None
            conn.writer.close()

    async def _roundtrip(self, msg: Message, what: str, timeout: float | None = None) -> Message:
        router = await self._connection()
        timeout = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(router.send_and_get_reply(msg), timeout)
        except TimeoutError:
            raise self.messages.timed_out(what, timeout) from None
        except (RouterClosed, OSError, EOFError) as exc:
            await self.aclose()
            raise self.messages.lost(exc) from None

    async def _bus(self, method: str, *args: Any) -> tuple[Any, ...]:
        msg = getattr(message_bus, method)(*args)
        return self.messages.check(await self._roundtrip(msg, method, min(self.timeout, 25.0)),
                                method)

    async def _call(self, method: broker1.AnyMethod, request: broker1.Request, expected: type[R],
                    correlation_id: str | None = None) -> R:
        _cid, msg = self.messages.call(method, request, correlation_id)
        return self.messages.result(method, await self._roundtrip(msg, method.value), expected)

    # -- API
    async def ping(self) -> float:
        started = time.monotonic()
        self.messages.check(await self._roundtrip(self.messages.ping(), "Ping"), "Ping")
        return time.monotonic() - started

    async def is_available(self) -> bool:
        try:
            names = set((await self._bus("ListNames"))[0])
            names |= set((await self._bus("ListActivatableNames"))[0])
        except BrokerUnavailableError:
            return False
        return self.messages.bus_name in names

    async def get_accounts(self, client_id: str) -> list[broker1.Account]:
        result = await self._call(broker1.Method.GET_ACCOUNTS,
                                  broker1.GetAccountsRequest(client_id),
                                  broker1.AccountsResult)
        return list(result.accounts)

    async def acquire_token_silently(self, auth: broker1.AuthParameters) -> broker1.TokenResult:
        request = self.messages.silent(auth)
        return await self._call(broker1.Method.ACQUIRE_TOKEN_SILENTLY, request, broker1.TokenResult)

    async def acquire_token_interactively(
        self, auth: broker1.AuthParameters, parent_window_handle: int = 1,
        on_device_code: DeviceCodeCallback | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.TokenResult:
        """Sign in; ``correlation_id`` lets another client cancel this very call."""
        method = broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY
        msg, bus_rule, local_rule = self.messages.interactive(auth, parent_window_handle,
                                                           correlation_id)
        return await self._prompting(method, msg, bus_rule, local_rule, on_device_code,
                                     broker1.TokenResult)

    async def _prompting(self, method: broker1.AnyMethod, msg: Message, bus_rule: MatchRule,
                         local_rule: MatchRule, on_device_code: DeviceCodeCallback | None,
                         expected: type[R]) -> R:
        """A call that may show device-code prompts: they go to ``on_device_code``."""
        router = await self._connection()
        signals: asyncio.Queue[Message | None] = asyncio.Queue()

        async def relay() -> None:
            while (signal := await signals.get()) is not None:
                prompt = self.messages.prompt(signal)
                if prompt is not None and on_device_code is not None:
                    try:
                        shown = on_device_code(prompt)
                        if inspect.isawaitable(shown):
                            await shown
                    except Exception as exc:
                        log.warning("on_device_code failed: %s", type(exc).__name__)

        with router.filter(local_rule, queue=signals):
            await self._bus("AddMatch", bus_rule)
            relay_task = asyncio.create_task(relay())
            try:
                reply = await self._roundtrip(msg, method.value)
            finally:
                signals.put_nowait(None)  # prompts that came before the reply are shown first
                try:
                    await asyncio.wait_for(relay_task, 5.0)
                except (TimeoutError, asyncio.CancelledError):
                    relay_task.cancel()
                if self._router is not None:
                    with contextlib.suppress(Exception):
                        await self._bus("RemoveMatch", bus_rule)
        return self.messages.result(method, reply, expected)

    async def remove_account(self, account: broker1.Account, client_id: str = "") -> None:
        request = broker1.RemoveAccountRequest(account, client_id)
        await self._call(broker1.Method.REMOVE_ACCOUNT, request, broker1.OkResult)

    async def generate_signed_http_request(self, client_id: str, pop_params: broker1.PopParams,
                                           home_account_id: str = "") -> str:
        """See :meth:`BrokerClient.generate_signed_http_request`."""
        request = self.messages.signed_http_request(client_id, pop_params, home_account_id)
        result = await self._call(broker1.Method.GENERATE_SIGNED_HTTP_REQUEST, request,
                                  broker1.SignedHttpRequestResult)
        return result.signed_http_request

    async def acquire_prt_sso_cookie(
        self, account: broker1.Account | None = None, sso_url: str = "", client_id: str = "",
        authority: str = "",
    ) -> broker1.PrtSsoCookieResult:
        """See :meth:`BrokerClient.acquire_prt_sso_cookie`."""
        request = self.messages.prt_sso_cookie_request(account, sso_url, client_id, authority)
        return await self._call(broker1.Method.ACQUIRE_PRT_SSO_COOKIE, request,
                                broker1.PrtSsoCookieResult)

    async def cancel_interactive_flow(self, correlation_id: str | None = None) -> None:
        """Cancel this connection's sign-ins, or the one started with ``correlation_id``."""
        await self._call(broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest(),
                         broker1.OkResult,
                         correlation_id)

    async def get_linux_broker_version(self, client_id: str = "") -> str:
        result = await self._call(broker1.Method.GET_LINUX_BROKER_VERSION,
                                  broker1.OpaqueRequest({"clientId": client_id}),
                                  broker1.VersionResult)
        return result.version

    async def set_default_account(self, *, home_account_id: str = "",
                                  username: str = "") -> None:
        """See :meth:`BrokerClient.set_default_account`."""
        request = self.messages.default_request(home_account_id, username)
        await self._call(broker1.UiMethod.SET_DEFAULT_ACCOUNT, request, broker1.OkResult)

    async def get_default_account(self) -> broker1.Account | None:
        """See :meth:`BrokerClient.get_default_account`."""
        result = await self._call(broker1.UiMethod.GET_DEFAULT_ACCOUNT, broker1.OpaqueRequest(),
                                  broker1.DefaultAccountResult)
        return result.account

    async def get_status(self) -> broker1.StatusResult:
        """See :meth:`BrokerClient.get_status`."""
        return await self._call(broker1.UiMethod.GET_STATUS, broker1.OpaqueRequest(),
                                broker1.StatusResult)


    async def register_device(
        self, *, authority: str = "", tenant: str = "", device_name: str = "",
        use_device_code: bool = False, home_account_id: str = "",
        on_device_code: DeviceCodeCallback | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.DeviceStatus:
        """See :meth:`BrokerClient.register_device`."""
        request = self.messages.register_device_request(
            authority=authority, tenant=tenant, device_name=device_name,
            use_device_code=use_device_code, home_account_id=home_account_id)
        method = broker1.UiMethod.REGISTER_DEVICE
        msg, bus_rule, local_rule = self.messages.prompting(method, request, correlation_id)
        result = await self._prompting(method, msg, bus_rule, local_rule, on_device_code,
                                       broker1.DeviceStatusResult)
        if result.device is None:
            raise BrokerProtocolError("the broker's RegisterDevice reply names no device")
        return result.device

    async def get_device_status(self) -> broker1.DeviceStatus | None:
        """See :meth:`BrokerClient.get_device_status`."""
        result = await self._call(broker1.UiMethod.GET_DEVICE_STATUS, broker1.OpaqueRequest(),
                                  broker1.DeviceStatusResult)
        return result.device

    async def unregister_device(self, *,
                                local_only: bool = False) -> broker1.UnregisterDeviceResult:
        """See :meth:`BrokerClient.unregister_device`."""
        return await self._call(broker1.UiMethod.UNREGISTER_DEVICE,
                                broker1.UnregisterDeviceRequest(local_only),
                                broker1.UnregisterDeviceResult)
