"""The D-Bus façade of the daemon: owns the Broker1 bus name and turns calls into handler calls.

One receive loop (jeepney asyncio connection + jeepney's reply matcher) reads every message from
the bus. It is running before ``RequestName`` is sent, so the call that activated us (usually
pymsalruntime's ``Peer.Ping``), which the bus may deliver before the ``RequestName`` reply, is
never lost. Each Broker1 call then runs as its own task: a slow interactive sign-in never holds
up another caller.

For every Broker1 call the service asks the bus for the caller's uid (never trusting the
message), refuses other users, parses the request with ``broker1.parse_request`` and awaits
``Handler.handle``. Our own ``broker1.UiMethod``s on ``broker1.UI_INTERFACE``
(``SetDefaultAccount``, ``GetDefaultAccount``: ``(s correlation_id, s request_json) -> s``)
go the same way, uid check included. Every outcome (a result, a ``BrokerStatusError``, a
malformed request, a wrong D-Bus signature, a bug) becomes a JSON reply: a call is never left
unanswered and the daemon does not crash. Logs carry the method, a sanitised correlation id,
the duration and the status, never a request or response body.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import re
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from jeepney import (
    DBusAddress,
    HeaderFields,
    Message,
    MessageFlag,
    MessageType,
    new_error,
    new_method_return,
    new_signal,
)
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusConnection, open_dbus_connection
from jeepney.io.common import ReplyMatcher
from jeepney.wrappers import unwrap_msg

from authbroker import broker1
from authbroker.broker1.memo import IdentityMemo, TextMemo
from authbroker.daemon.handler import CallContext, DeviceCodePrompt, Handler
from authbroker.errors import (
    BrokerProtocolError,
    BrokerStatusError,
    BrokerUnavailableError,
    NameTakenError,
)

log = logging.getLogger(__name__)

# RequestName flags and replies (D-Bus specification)
_DO_NOT_QUEUE = 0x4
_PRIMARY_OWNER, _ALREADY_OWNER = 1, 4

_ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
_ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
_ERR_UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"

_BUS_CALL_TIMEOUT_S = 10.0
_UID_CACHE_SIZE = 512
#: Calls running at once; beyond this a caller gets a "busy" error object at once.
MAX_CALLS_IN_FLIGHT = 64
_METHODS = {m.value: m for m in broker1.Method}
_UI_METHODS = {m.value: m for m in broker1.UiMethod}
_SAFE_ID = re.compile(r"[^A-Za-z0-9._:-]")


def safe_id(value: object) -> str:
    """A correlation id fit for a log line (callers choose it: no newlines, bounded length)."""
    return _SAFE_ID.sub("?", value)[:64] if isinstance(value, str) else "?"


def quoteattr(value: str) -> str:
    return f'"{html.escape(value, quote=True)}"'


def introspection_xml() -> str:
    """Introspection data for ``broker1.OBJECT_PATH``."""
    args = (
        '      <arg type="s" name="protocol_version" direction="in"/>\n'
        '      <arg type="s" name="correlation_id" direction="in"/>\n'
        '      <arg type="s" name="request_json" direction="in"/>\n'
        '      <arg type="s" name="result" direction="out"/>\n'
    )
    methods = "".join(f"    <method name={quoteattr(m.value)}>\n{args}    </method>\n"
                      for m in broker1.Method)
    ui_args = args.split("\n", 1)[1]  # no protocol_version
    ui_methods = "".join(f"    <method name={quoteattr(m.value)}>\n{ui_args}    </method>\n"
                         for m in broker1.UiMethod)
    return (
        '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
        ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
        "<node>\n"
        f"  <interface name={quoteattr(broker1.INTERFACE)}>\n{methods}  </interface>\n"
        f"  <interface name={quoteattr(broker1.UI_INTERFACE)}>\n{ui_methods}"
        f"    <signal name={quoteattr(broker1.DEVICE_CODE_SIGNAL)}>\n"
        '      <arg type="s" name="correlation_id"/>\n'
        '      <arg type="s" name="prompt_json"/>\n'
        "    </signal>\n"
        "  </interface>\n"
        f"  <interface name={quoteattr(broker1.PEER_INTERFACE)}>\n"
        '    <method name="Ping"/>\n'
        '    <method name="GetMachineId">\n'
        '      <arg type="s" name="machine_uuid" direction="out"/>\n'
        "    </method>\n"
        "  </interface>\n"
        f"  <interface name={quoteattr(broker1.INTROSPECTABLE_INTERFACE)}>\n"
        '    <method name="Introspect">\n'
        '      <arg type="s" name="xml_data" direction="out"/>\n'
        "    </method>\n"
        "  </interface>\n"
        "</node>\n"
    )


def _parent_node_xml(path: str) -> str | None:
    """Introspection of an ancestor of the object path (so bus browsers can walk to it)."""
    prefix = path.rstrip("/") + "/"
    if not broker1.OBJECT_PATH.startswith(prefix):
        return None
    child = broker1.OBJECT_PATH[len(prefix):].split("/")[0]
    return f"<node>\n  <node name={quoteattr(child)}/>\n</node>\n"


def _machine_id() -> str:
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            value = Path(candidate).read_text().strip()
            if value:
                return value
    return ""


def default_bus() -> str:
    """The bus we were activated on (``DBUS_STARTER_ADDRESS``), else the session bus."""
    return os.environ.get("DBUS_STARTER_ADDRESS") or "SESSION"


def _where(exc: BaseException) -> str:
    """File:line of where an exception was raised — loggable, unlike its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))


class BrokerService:
    """Serve ``handler`` on the bus as ``broker1.BUS_NAME``.

    ``expected_uid`` is the only uid whose calls are served (default: our own). ``idle_exit``
    (seconds) releases the name and returns from :meth:`run` after that long without calls —
    for D-Bus activation, where the bus starts us again on the next call.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        bus: str | None = None,
        bus_name: str = broker1.BUS_NAME,
        expected_uid: int | None = None,
        idle_exit: float | None = None,
    ) -> None:
        self.handler = handler
        self.bus = bus or default_bus()
        self.bus_name = bus_name
        self.expected_uid = os.getuid() if expected_uid is None else expected_uid
        self.idle_exit = idle_exit
        self._conn: DBusConnection | None = None
        self._replies = ReplyMatcher()
        self._uids: OrderedDict[str, int] = OrderedDict()
        self._requests: TextMemo[broker1.Request] = TextMemo()  # repeated silent calls
        self._encoded: IdentityMemo[str] = IdentityMemo()  # the core's cached results
        self._tasks: set[asyncio.Task[None]] = set()
        self._receiver: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()
        self._closed = asyncio.Event()
        self.unique_name = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, start receiving, then own the name. NameTakenError if someone else has it."""
        try:
            self._conn = await open_dbus_connection(self.bus)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise BrokerUnavailableError(
                f"cannot connect to the D-Bus session bus ({type(exc).__name__})",
                hint="is DBUS_SESSION_BUS_ADDRESS set and the bus running?",
            ) from exc
        self.unique_name = self._conn.unique_name or ""
        self._receiver = asyncio.create_task(self._receive_loop(), name="dbus-receiver")
        reply = await self._bus_call(message_bus.RequestName(self.bus_name, _DO_NOT_QUEUE))
        if reply[0] not in (_PRIMARY_OWNER, _ALREADY_OWNER):
            owner = await self._name_owner_pid()
            await self.aclose()
            raise NameTakenError(
                f"{self.bus_name} is already owned on this bus{owner}",
                hint="another broker (Microsoft's identity broker or another authbroker daemon) "
                "is running; stop it first",
            )
        log.info("serving %s at %s as %s (uid %d)", self.bus_name, broker1.OBJECT_PATH,
                 self.unique_name, self.expected_uid)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, the bus goes away or the idle timeout passes."""
        if self._conn is None:
            await self.start()
        assert self._receiver is not None
        waiters = [asyncio.create_task(self._closed.wait()), self._receiver]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        if self.idle_exit is not None:
            waiters.append(asyncio.create_task(self._idle_watch(self.idle_exit)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not self._receiver:
                    waiter.cancel()
            await self.aclose()

    async def aclose(self) -> None:
        """Give up the name, finish (or answer) running calls, disconnect. Idempotent."""
        if self._conn is None:
            return
        if self._receiver is not None and not self._receiver.done():
            # Release first: calls already routed to us are read before the reply arrives.
            with contextlib.suppress(Exception):
                await self._bus_call(message_bus.ReleaseName(self.bus_name), timeout=2.0)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()  # each cancelled call still sends its error reply
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(BaseException):
                await self._receiver
        conn, self._conn = self._conn, None
        with contextlib.suppress(Exception):
            await conn.close()
        self._closed.set()
        log.info("stopped serving %s", self.bus_name)

    async def __aenter__(self) -> BrokerService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _idle_watch(self, idle_s: float) -> None:
        while True:
            quiet = time.monotonic() - self._last_activity
            if not self._tasks and quiet >= idle_s:
                log.info("idle for %.0f s: exiting (the bus starts us again on demand)", quiet)
                return
            await asyncio.sleep(max(0.05, idle_s - quiet) if not self._tasks else idle_s)

    # -- bus plumbing --------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._conn is not None
        try:
            while True:
                msg = await self._conn.receive()
                if self._replies.dispatch(msg):
                    continue
                if msg.header.message_type is MessageType.method_call:
                    self._last_activity = time.monotonic()
                    task = asyncio.create_task(self._serve(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._call_finished)
        except (EOFError, ConnectionError, OSError) as exc:
            log.error("lost the D-Bus connection (%s): stopping", type(exc).__name__)
        finally:
            self._replies.drop_all()

    def _call_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._last_activity = time.monotonic()

    async def _bus_call(self, msg: Message, timeout: float = _BUS_CALL_TIMEOUT_S) -> tuple:
        assert self._conn is not None
        serial = next(self._conn.outgoing_serial)
        with self._replies.catch(serial, asyncio.get_running_loop().create_future()) as fut:
            await self._conn.send(msg, serial=serial)
            reply = await asyncio.wait_for(fut, timeout)
        return unwrap_msg(reply)

    async def _send(self, msg: Message) -> None:
        if self._conn is None:
            return
        try:
            await self._conn.send(msg)
        except (ConnectionError, OSError) as exc:
            log.warning("could not send a reply (%s)", type(exc).__name__)

    async def _reply(self, call: Message, signature: str | None = None, body: tuple = ()) -> None:
        if not call.header.flags & MessageFlag.no_reply_expected:
            await self._send(new_method_return(call, signature, body))

    async def _error(self, call: Message, name: str, text: str) -> None:
        if not call.header.flags & MessageFlag.no_reply_expected:
            await self._send(new_error(call, name, "s", (text,)))

    async def _name_owner_pid(self) -> str:
        try:
            (pid,) = await self._bus_call(
                message_bus.GetConnectionUnixProcessID(self.bus_name), timeout=2.0)
            return f" by process {pid}"
        except Exception:
            return ""

    async def uid_of(self, sender: str) -> int:
        """The caller's uid as the bus knows it (cached per unique name; names are not reused)."""
        uid = self._uids.get(sender)
        if uid is None:
            (uid,) = await self._bus_call(message_bus.GetConnectionUnixUser(sender))
            self._uids[sender] = uid
            if len(self._uids) > _UID_CACHE_SIZE:
                self._uids.popitem(last=False)
        else:
            self._uids.move_to_end(sender)
        return int(uid)

    # -- dispatch ------------------------------------------------------------------------------

    async def _serve(self, msg: Message) -> None:
        fields = msg.header.fields
        path = fields.get(HeaderFields.path, "")
        interface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member, "")
        try:
            if interface == broker1.PEER_INTERFACE or (interface is None and member in (
                    "Ping", "GetMachineId")):
                await self._serve_peer(msg, member)
            elif interface == broker1.INTROSPECTABLE_INTERFACE or (
                    interface is None and member == "Introspect"):
                await self._serve_introspect(msg, path, member)
            elif interface in (broker1.INTERFACE, None) and member in _METHODS:
                if path != broker1.OBJECT_PATH:
                    await self._error(msg, _ERR_UNKNOWN_OBJECT, f"no object at {path}")
                else:
                    await self._serve_broker_call(msg, _METHODS[member])
            elif interface in (broker1.UI_INTERFACE, None) and member in _UI_METHODS:
                if path != broker1.OBJECT_PATH:
                    await self._error(msg, _ERR_UNKNOWN_OBJECT, f"no object at {path}")
                else:
                    await self._serve_broker_call(msg, _UI_METHODS[member])
            elif interface in (broker1.INTERFACE, broker1.UI_INTERFACE):
                await self._error(msg, _ERR_UNKNOWN_METHOD,
                                  f"{interface} has no method {member!r}")
            elif path not in (broker1.OBJECT_PATH,) and _parent_node_xml(path) is None:
                await self._error(msg, _ERR_UNKNOWN_OBJECT, f"no object at {path}")
            else:
                await self._error(msg, _ERR_UNKNOWN_INTERFACE if interface else _ERR_UNKNOWN_METHOD,
                                  f"{interface or ''} {member} is not implemented here".strip())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one call take the daemon down
            log.error("unexpected %s while serving %s.%s at %s", type(exc).__name__,
                      interface, member, _where(exc))

    async def _serve_peer(self, msg: Message, member: str) -> None:
        if member == "Ping":
            await self._reply(msg)
        elif member == "GetMachineId":
            await self._reply(msg, "s", (_machine_id(),))
        else:
            await self._error(msg, _ERR_UNKNOWN_METHOD, f"Peer has no method {member!r}")

    async def _serve_introspect(self, msg: Message, path: str, member: str) -> None:
        if member != "Introspect":
            await self._error(msg, _ERR_UNKNOWN_METHOD, f"no method {member!r}")
        elif path == broker1.OBJECT_PATH:
            await self._reply(msg, "s", (introspection_xml(),))
        elif (xml := _parent_node_xml(path)) is not None:
            await self._reply(msg, "s", (xml,))
        else:
            await self._error(msg, _ERR_UNKNOWN_OBJECT, f"no object at {path}")

    async def _serve_broker_call(self, msg: Message, method: broker1.AnyMethod) -> None:
        started = time.monotonic()
        sender = msg.header.fields.get(HeaderFields.sender, "")
        signature = msg.header.fields.get(HeaderFields.signature, "")
        body = msg.body if isinstance(msg.body, tuple) else ()
        at = len(_signature(method)) - 2  # the correlation id comes before request_json
        correlation_id = body[at] if len(body) > at and isinstance(body[at], str) else ""
        outcome = "ok"
        try:
            reply = await self._broker_reply(method, sender, signature, body, correlation_id)
        except asyncio.CancelledError:
            reply = broker1.encode(broker1.error_reply(BrokerStatusError(
                broker1.Status.TRANSIENT_ERROR, "the broker is shutting down; try again",
                tag="service.shutdown"), method))
            self._log_call(method, correlation_id, started,
                           f"status {int(broker1.Status.TRANSIENT_ERROR)} (shutdown)")
            await asyncio.shield(self._reply(msg, "s", (reply,)))
            raise
        except BrokerStatusError as exc:
            reply = broker1.encode(broker1.error_reply(exc, method))
            outcome = f"status {int(exc.status)}"
        except _Refused as exc:
            reply = broker1.encode(broker1.error_reply(exc.error, method))
            outcome = exc.outcome
        except Exception as exc:
            log.error("%s correlation=%s failed with unexpected %s at %s", method.value,
                      safe_id(correlation_id), type(exc).__name__, _where(exc))
            reply = broker1.encode(broker1.error_reply(BrokerStatusError(
                broker1.Status.UNEXPECTED,
                f"internal broker error ({type(exc).__name__}); see the broker's log",
                tag="service.unexpected"), method))
            outcome = f"status {int(broker1.Status.UNEXPECTED)} (internal error)"
        self._log_call(method, correlation_id, started, outcome)  # before the caller can see it
        await self._reply(msg, "s", (reply,))

    async def _broker_reply(
        self, method: broker1.AnyMethod, sender: str, signature: str, body: tuple,
        correlation_id: str,
    ) -> str:
        if len(self._tasks) > MAX_CALLS_IN_FLIGHT:
            raise BrokerStatusError(broker1.Status.TRANSIENT_ERROR,
                                  "the broker is busy with too many calls; try again",
                                  tag="service.busy")
        try:
            uid = await self.uid_of(sender)
        except Exception as exc:
            raise _Refused(BrokerStatusError(
                broker1.Status.INCORRECT_CONFIGURATION, "the broker could not identify the caller",
                tag="service.uid-lookup"), outcome=f"uid lookup failed ({type(exc).__name__})",
            ) from exc
        if uid != self.expected_uid:
            raise _Refused(BrokerStatusError(
                broker1.Status.INCORRECT_CONFIGURATION,
                f"this broker serves uid {self.expected_uid} only; the caller runs as uid {uid}",
                tag="service.foreign-uid"), outcome=f"refused foreign uid {uid}")
        if signature != _signature(method):
            raise BrokerStatusError(
                broker1.Status.API_CONTRACT_VIOLATION,
                f"{method.value} takes {_ARGS[_signature(method)]}, not D-Bus signature "
                f"{signature!r}", tag="service.signature")
        try:
            request = self._requests.get(method, body[-1], partial(broker1.parse_request, method))
        except BrokerProtocolError as exc:
            raise BrokerStatusError(broker1.Status.API_CONTRACT_VIOLATION,
                                  f"malformed {method.value} request: {exc}",
                                  tag="service.parse") from None
        ctx = CallContext(  # the handler logs the id: give it the log-safe form
            correlation_id=safe_id(correlation_id), sender=sender, uid=uid,
            announce_device_code=partial(self._announce, sender, correlation_id),
        )
        result = await self.handler.handle(method, request, ctx)
        return self._encoded.get(result, lambda r: broker1.encode(r.to_wire()))

    async def _announce(self, destination: str, correlation_id: str,
                        prompt: DeviceCodePrompt) -> None:
        """Send the device-code prompt to the caller only (a unicast signal)."""
        emitter = DBusAddress(broker1.OBJECT_PATH, interface=broker1.UI_INTERFACE)
        signal = new_signal(emitter, broker1.DEVICE_CODE_SIGNAL, "ss",
                            (correlation_id, json.dumps(prompt.to_wire())))
        if destination:
            signal.header.fields[HeaderFields.destination] = destination
        await self._send(signal)
        log.info("device-code prompt sent to %s (correlation %s)", destination,
                 safe_id(correlation_id))

    def _log_call(self, method: broker1.AnyMethod, correlation_id: str, started: float,
                  outcome: str) -> None:
        # Answered routine calls (silent tokens, account lists) are the hot path: DEBUG, so a
        # busy broker's log stays readable and cheap. Sign-ins and every failure stay at INFO.
        level = logging.DEBUG if outcome == "ok" and method in _ROUTINE else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "%s correlation=%s %s in %.1f ms", method.value,
                    safe_id(correlation_id), outcome, (time.monotonic() - started) * 1000)


_ROUTINE = frozenset({broker1.Method.ACQUIRE_TOKEN_SILENTLY, broker1.Method.GET_ACCOUNTS,
                      broker1.Method.GET_LINUX_BROKER_VERSION})

_ARGS = {"sss": "three strings (protocol_version, correlation_id, request_json)",
          "ss": "two strings (correlation_id, request_json)"}


def _signature(method: broker1.AnyMethod) -> str:
    """Broker1 methods take (protocol_version, correlation_id, request_json); ours drop the
    protocol version."""
    return "sss" if isinstance(method, broker1.Method) else "ss"


class _Refused(Exception):
    """A call refused before it reached the handler (``outcome`` is for the log)."""

    def __init__(self, error: BrokerStatusError, *, outcome: str) -> None:
        super().__init__(error.context)
        self.error = error
        self.outcome = outcome


async def serve(
    handler: Handler,
    *,
    stop: asyncio.Event | None = None,
    bus: str | None = None,
    idle_exit: float | None = None,
    on_ready: Callable[[BrokerService], Awaitable[None] | None] | None = None,
) -> None:
    """Own the name and serve ``handler`` until ``stop`` is set (or idle/bus loss)."""
    service = BrokerService(handler, bus=bus, idle_exit=idle_exit)
    await service.start()
    if on_ready is not None:
        maybe = on_ready(service)
        if maybe is not None:
            await maybe
    await service.run(stop)
