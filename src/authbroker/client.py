"""Clients of the Broker1 daemon: ``BrokerClient`` (blocking) and ``AsyncBrokerClient`` (asyncio).

Both are thin twins over one sans-I/O core (:class:`Broker1Calls`) that builds the D-Bus
messages from ``ipc`` requests and turns replies into ``ipc`` results or errors; the twins only
move messages. Replies carrying an error object raise ``BrokerStatusError``; a missing bus or
broker, a timeout or a lost connection raise ``BrokerUnavailableError``; a reply that breaks the
protocol raises ``BrokerProtocolError``.

Interactive calls listen for the daemon's device-code prompt (a signal on ``broker1.UI_INTERFACE``
carrying the call's correlation id) while the call runs, and hand it to ``on_device_code``;
the default prints the prompt's message to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from jeepney import DBusAddress, HeaderFields, MatchRule, Message, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io import asyncio as jasyncio
from jeepney.io import blocking as jblocking
from jeepney.io.common import RouterClosed

from authbroker import broker1
from authbroker.broker1.memo import IdentityMemo, TextMemo
from authbroker.daemon.handler import DeviceCodePrompt
from authbroker.errors import BrokerProtocolError, BrokerUnavailableError

__all__ = ["AsyncBrokerClient", "Broker1Calls", "BrokerClient", "DeviceCodePrompt",
           "print_device_code"]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=broker1.Result)
DeviceCodeCallback = Callable[[DeviceCodePrompt], Awaitable[None] | None]

_START_HINT = "start it with 'authbroker daemon', or run 'authbroker install-service' once"
_UNAVAILABLE_ERRORS = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.NoServer",
}


def print_device_code(prompt: DeviceCodePrompt) -> None:
    """The default ``on_device_code``: show the sign-in instructions on stderr."""
    print(prompt.message or f"To sign in, open {prompt.verification_uri} and enter the code "
          f"{prompt.user_code}", file=sys.stderr, flush=True)


class Broker1Calls:
    """Sans-I/O: Broker1 messages out, typed results in. Shared by both clients."""

    def __init__(self, bus_name: str = broker1.BUS_NAME) -> None:
        self.bus_name = bus_name
        # Asking again for a token repeats the same request and, from the broker's cache, the
        # same reply: neither is encoded or parsed twice (authbroker.broker1.memo).
        self._silent: IdentityMemo[broker1.TokenRequest] = IdentityMemo()
        self._encoded: IdentityMemo[str] = IdentityMemo()
        self._parsed: TextMemo[broker1.Result] = TextMemo()
        self.broker = DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name,
                                  interface=broker1.INTERFACE)
        self.peer = DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name,
                                interface=broker1.PEER_INTERFACE)
        self.ui = DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name,
                              interface=broker1.UI_INTERFACE)

    # -- requests
    def call(self, method: broker1.AnyMethod, request: broker1.Request,
             correlation_id: str | None = None) -> tuple[str, Message]:
        """A Broker1 call, or one of our own ``broker1.UiMethod``s (no protocol version)."""
        correlation_id = correlation_id or str(uuid.uuid4())
        request_json = self._encoded.get(request, lambda r: broker1.encode(r.to_wire()))
        if isinstance(method, broker1.UiMethod):
            return correlation_id, new_method_call(
                self.ui, method.value, "ss", (correlation_id, request_json))
        body = (broker1.PROTOCOL_VERSION, correlation_id, request_json)
        return correlation_id, new_method_call(self.broker, method.value, "sss", body)

    @staticmethod
    def default_request(home_account_id: str = "",
                        username: str = "") -> broker1.SetDefaultAccountRequest:
        if bool(home_account_id) == bool(username):
            raise ValueError("name the account by exactly one of home_account_id or username")
        return broker1.SetDefaultAccountRequest(home_account_id=home_account_id, username=username)

    @staticmethod
    def silent_request(auth: broker1.AuthParameters) -> broker1.TokenRequest:
        auth = dataclasses.replace(
            auth, authorization_type=broker1.AuthorizationType.CACHED_REFRESH_TOKEN)
        return broker1.TokenRequest(auth=auth)

    def silent(self, auth: broker1.AuthParameters) -> broker1.TokenRequest:
        """:meth:`silent_request`, the same object for the same ``auth``."""
        return self._silent.get(auth, self.silent_request)

    @staticmethod
    def interactive_request(auth: broker1.AuthParameters,
                            parent_window_handle: int) -> broker1.TokenRequest:
        auth = dataclasses.replace(auth, authorization_type=broker1.AuthorizationType.INTERACTIVE,
                                   parent_window=parent_window_handle,
                                   is_sign_in=auth.account is None or auth.is_sign_in)
        return broker1.TokenRequest(auth=auth, parent_window_handle=parent_window_handle)

    def interactive(self, auth: broker1.AuthParameters, parent_window_handle: int,
                    correlation_id: str | None) -> tuple[Message, MatchRule, MatchRule]:
        """An interactive sign-in: (message, bus rule, local rule) as in :meth:`prompt_rules`."""
        request = self.interactive_request(auth, parent_window_handle)
        cid, msg = self.call(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, correlation_id)
        return (msg, *self.prompt_rules(cid))

    def ping(self) -> Message:
        return new_method_call(self.peer, "Ping")

    def prompt_rules(self, correlation_id: str) -> tuple[MatchRule, MatchRule]:
        """(rule for the bus's AddMatch, rule for the local filter) of one call's prompts.

        The bus resolves ``sender`` from the well-known name to its owner; the local filter
        sees the owner's unique name, so it matches on the correlation id instead.
        """
        def rule(sender: str | None) -> MatchRule:
            r = MatchRule(type="signal", sender=sender, interface=broker1.UI_INTERFACE,
                          member=broker1.DEVICE_CODE_SIGNAL, path=broker1.OBJECT_PATH)
            r.add_arg_condition(0, correlation_id)
            return r
        return rule(self.bus_name), rule(None)

    # -- replies
    @staticmethod
    def prompt(signal: Message) -> DeviceCodePrompt | None:
        try:
            obj = json.loads(signal.body[1])
            return DeviceCodePrompt.from_wire(obj) if isinstance(obj, dict) else None
        except (ValueError, IndexError, TypeError):
            return None

    @staticmethod
    def check(reply: Message, what: str) -> tuple:
        """The body of a method return; bus errors become authbroker errors."""
        if reply.header.message_type is MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            if name in _UNAVAILABLE_ERRORS or name.startswith("org.freedesktop.DBus.Error.Spawn"):
                raise BrokerUnavailableError(f"no broker answered {what} ({name})",
                                             hint=_START_HINT)
            raise BrokerProtocolError(f"the broker failed {what} with D-Bus error {name}: {text}")
        return tuple(reply.body)

    def result(self, method: broker1.AnyMethod, reply: Message, expected: type[R]) -> R:
        """The reply's result, which must be an ``expected``."""
        body = self.check(reply, method.value)
        if len(body) != 1 or not isinstance(body[0], str):
            raise BrokerProtocolError(f"the broker's {method.value} reply is not one string")
        try:
            result = self._parsed.get(method, body[0], partial(broker1.parse_response, method))
        except BrokerProtocolError as exc:
            raise BrokerProtocolError(f"the broker's {method.value} reply is malformed: {exc}") \
                from None
        if not isinstance(result, expected):
            raise BrokerProtocolError(f"unexpected reply type {type(result).__name__}")
        return result

    @staticmethod
    def timed_out(what: str, timeout: float) -> BrokerUnavailableError:
        return BrokerUnavailableError(f"the broker did not answer {what} within {timeout:g} s",
                                      hint="see the broker's log (journalctl --user -u "
                                      "authbroker-broker)")

    @staticmethod
    def no_bus(exc: BaseException) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"cannot connect to the D-Bus session bus ({type(exc).__name__}: {exc})",
            hint="is DBUS_SESSION_BUS_ADDRESS set? the broker needs a desktop or "
            "'dbus-run-session'")

    @staticmethod
    def lost(exc: BaseException) -> BrokerUnavailableError:
        return BrokerUnavailableError(f"lost the D-Bus connection ({type(exc).__name__})")


class _ClientSettings:
    """What both clients are made with: the bus, the call timeout, the broker's name."""

    def __init__(self, *, bus: str = "SESSION", timeout: float = broker1.CLIENT_CALL_TIMEOUT_S,
                 bus_name: str = broker1.BUS_NAME) -> None:
        self.bus = bus
        self.timeout = timeout
        self.calls = Broker1Calls(bus_name)


class BrokerClient(_ClientSettings):
    """Blocking client. Use as a context manager, or call :meth:`close`."""

    _conn: jblocking.DBusConnection | None = None

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> jblocking.DBusConnection:
        if self._conn is None:
            try:
                self._conn = jblocking.open_dbus_connection(self.bus)
            except (OSError, KeyError, ValueError, TimeoutError) as exc:
                raise self.calls.no_bus(exc) from None
        return self._conn

    def _roundtrip(self, msg: Message, what: str, timeout: float | None = None,
                   on_signal: Callable[[Message], None] | None = None,
                   signal_rule: MatchRule | None = None) -> Message:
        conn = self._connection()
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        serial = next(conn.outgoing_serial)
        try:
            conn.send(msg, serial=serial)
            while True:
                incoming = conn.receive(timeout=max(0.0, deadline - time.monotonic()))
                if incoming.header.fields.get(HeaderFields.reply_serial) == serial:
                    return incoming
                if on_signal is not None and signal_rule is not None \
                        and signal_rule.matches(incoming):
                    on_signal(incoming)
        except TimeoutError:
            self.close()  # a late reply must not be taken for the next call's
            raise self.calls.timed_out(what, timeout) from None
        except (OSError, EOFError) as exc:
            self.close()
            raise self.calls.lost(exc) from None

    def _bus(self, method: str, *args: Any) -> tuple:
        msg = getattr(message_bus, method)(*args)
        return self.calls.check(self._roundtrip(msg, method, min(self.timeout, 25.0)), method)

    def _call(self, method: broker1.AnyMethod, request: broker1.Request, expected: type[R],
              correlation_id: str | None = None) -> R:
        _cid, msg = self.calls.call(method, request, correlation_id)
        return self.calls.result(method, self._roundtrip(msg, method.value), expected)

    # -- API
    def ping(self) -> float:
        """Ping the broker (starting it if it is activatable); the round trip in seconds."""
        started = time.monotonic()
        self.calls.check(self._roundtrip(self.calls.ping(), "Ping"), "Ping")
        return time.monotonic() - started

    def is_available(self) -> bool:
        """Whether a broker owns the name or the bus can start one."""
        try:
            names = set(self._bus("ListNames")[0]) | set(self._bus("ListActivatableNames")[0])
        except BrokerUnavailableError:
            return False
        return self.calls.bus_name in names

    def get_accounts(self, client_id: str) -> list[broker1.Account]:
        """Every account signed in to the broker, whatever ``client_id`` (brokers share
        accounts between apps), the default one first."""
        result = self._call(broker1.Method.GET_ACCOUNTS, broker1.GetAccountsRequest(client_id),
                            broker1.AccountsResult)
        return list(result.accounts)

    def acquire_token_silently(self, auth: broker1.AuthParameters) -> broker1.TokenResult:
        return self._call(broker1.Method.ACQUIRE_TOKEN_SILENTLY, self.calls.silent(auth),
                          broker1.TokenResult)

    def acquire_token_interactively(
        self, auth: broker1.AuthParameters, parent_window_handle: int = 1,
        on_device_code: Callable[[DeviceCodePrompt], None] | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.TokenResult:
        """Sign in; ``correlation_id`` lets another client cancel this very call."""
        method = broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY
        msg, bus_rule, local_rule = self.calls.interactive(auth, parent_window_handle,
                                                           correlation_id)

        def on_signal(signal: Message) -> None:
            prompt = self.calls.prompt(signal)
            if prompt is not None and on_device_code is not None:
                try:
                    on_device_code(prompt)
                except Exception as exc:
                    log.warning("on_device_code failed: %s", type(exc).__name__)

        self._bus("AddMatch", bus_rule)
        try:
            reply = self._roundtrip(msg, method.value, on_signal=on_signal, signal_rule=local_rule)
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._bus("RemoveMatch", bus_rule)
        return self.calls.result(method, reply, broker1.TokenResult)

    def remove_account(self, account: broker1.Account, client_id: str = "") -> None:
        self._call(broker1.Method.REMOVE_ACCOUNT, broker1.RemoveAccountRequest(account, client_id),
                   broker1.OkResult)

    def cancel_interactive_flow(self, correlation_id: str | None = None) -> None:
        """Cancel this connection's sign-ins, or the one started with ``correlation_id``."""
        self._call(broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest(),
                   broker1.OkResult,
                   correlation_id)

    def get_linux_broker_version(self, client_id: str = "") -> str:
        result = self._call(broker1.Method.GET_LINUX_BROKER_VERSION,
                            broker1.OpaqueRequest({"clientId": client_id}), broker1.VersionResult)
        return result.version

    def set_default_account(self, *, home_account_id: str = "", username: str = "") -> None:
        """Make a signed-in account the one ``account: null`` sign-ins get (authbroker only).

        ``BrokerStatusError`` (status ACCOUNT_NOT_FOUND) when no such account is signed in.
        """
        request = self.calls.default_request(home_account_id, username)
        self._call(broker1.UiMethod.SET_DEFAULT_ACCOUNT, request, broker1.OkResult)

    def get_default_account(self) -> broker1.Account | None:
        """The account ``account: null`` sign-ins get, if any (authbroker only)."""
        result = self._call(broker1.UiMethod.GET_DEFAULT_ACCOUNT, broker1.OpaqueRequest(),
                            broker1.DefaultAccountResult)
        return result.account


class AsyncBrokerClient(_ClientSettings):
    """The asyncio twin of :class:`BrokerClient` (``async with``, or ``await aclose()``)."""

    _conn: jasyncio.DBusConnection | None = None
    _router: jasyncio.DBusRouter | None = None

    async def __aenter__(self) -> AsyncBrokerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        router, conn, self._router, self._conn = self._router, self._conn, None, None
        if router is not None:
            with contextlib.suppress(Exception):
                await router.__aexit__(None, None, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _connection(self) -> jasyncio.DBusRouter:
        if self._router is None:
            try:
                self._conn = await jasyncio.open_dbus_connection(self.bus)
            except (OSError, KeyError, ValueError, EOFError, TimeoutError) as exc:
                raise self.calls.no_bus(exc) from None
            self._router = jasyncio.DBusRouter(self._conn)
        return self._router

    async def _roundtrip(self, msg: Message, what: str, timeout: float | None = None) -> Message:
        router = await self._connection()
        timeout = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(router.send_and_get_reply(msg), timeout)
        except TimeoutError:
            raise self.calls.timed_out(what, timeout) from None
        except (RouterClosed, OSError, EOFError) as exc:
            await self.aclose()
            raise self.calls.lost(exc) from None

    async def _bus(self, method: str, *args: Any) -> tuple:
        msg = getattr(message_bus, method)(*args)
        return self.calls.check(await self._roundtrip(msg, method, min(self.timeout, 25.0)),
                                method)

    async def _call(self, method: broker1.AnyMethod, request: broker1.Request, expected: type[R],
                    correlation_id: str | None = None) -> R:
        _cid, msg = self.calls.call(method, request, correlation_id)
        return self.calls.result(method, await self._roundtrip(msg, method.value), expected)

    # -- API
    async def ping(self) -> float:
        started = time.monotonic()
        self.calls.check(await self._roundtrip(self.calls.ping(), "Ping"), "Ping")
        return time.monotonic() - started

    async def is_available(self) -> bool:
        try:
            names = set((await self._bus("ListNames"))[0])
            names |= set((await self._bus("ListActivatableNames"))[0])
        except BrokerUnavailableError:
            return False
        return self.calls.bus_name in names

    async def get_accounts(self, client_id: str) -> list[broker1.Account]:
        result = await self._call(broker1.Method.GET_ACCOUNTS,
                                  broker1.GetAccountsRequest(client_id),
                                  broker1.AccountsResult)
        return list(result.accounts)

    async def acquire_token_silently(self, auth: broker1.AuthParameters) -> broker1.TokenResult:
        request = self.calls.silent(auth)
        return await self._call(broker1.Method.ACQUIRE_TOKEN_SILENTLY, request, broker1.TokenResult)

    async def acquire_token_interactively(
        self, auth: broker1.AuthParameters, parent_window_handle: int = 1,
        on_device_code: DeviceCodeCallback | None = print_device_code,
        correlation_id: str | None = None,
    ) -> broker1.TokenResult:
        """Sign in; ``correlation_id`` lets another client cancel this very call."""
        method = broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY
        msg, bus_rule, local_rule = self.calls.interactive(auth, parent_window_handle,
                                                           correlation_id)
        router = await self._connection()
        signals: asyncio.Queue[Message | None] = asyncio.Queue()

        async def relay() -> None:
            while (signal := await signals.get()) is not None:
                prompt = self.calls.prompt(signal)
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
        return self.calls.result(method, reply, broker1.TokenResult)

    async def remove_account(self, account: broker1.Account, client_id: str = "") -> None:
        request = broker1.RemoveAccountRequest(account, client_id)
        await self._call(broker1.Method.REMOVE_ACCOUNT, request, broker1.OkResult)

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
        request = self.calls.default_request(home_account_id, username)
        await self._call(broker1.UiMethod.SET_DEFAULT_ACCOUNT, request, broker1.OkResult)

    async def get_default_account(self) -> broker1.Account | None:
        """See :meth:`BrokerClient.get_default_account`."""
        result = await self._call(broker1.UiMethod.GET_DEFAULT_ACCOUNT, broker1.OpaqueRequest(),
                                  broker1.DefaultAccountResult)
        return result.account
