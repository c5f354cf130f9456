"""The D-Bus façade of the daemon: owns the Broker1 bus name and turns calls into handler calls.

The bus plumbing (our own receive loop, the name, bus calls, callers' uids) is
:class:`~authbroker.daemon.bus.BusEndpoint`; this module routes each method call and runs the
Broker1 call path. Every method in ``broker1.METHODS`` (Broker1's own and our
``broker1.UiMethod``s on ``broker1.EXTENSION_INTERFACE``) goes the same way: a busy check, the
caller's uid from the bus (never from the message; other users are refused), the D-Bus
signature its row declares, ``broker1.parse_request``, ``Handler.handle``, the reply. Every
outcome (a result, a ``BrokerStatusError``, a malformed request, a wrong D-Bus signature, a
bug) becomes a JSON reply: a call is never left unanswered and the daemon does not crash.

A sign-in's caller is watched while its call runs (``BusEndpoint.watching``): when it leaves
the bus, ``Handler.caller_left`` ends its sign-ins at once instead of at their timeout. Each
caller's pid, asked of the bus once per connection, goes in the call's context (``authbroker
status`` lists sign-ins and recent callers with it).

The access log: one line per answered call on the logger ``authbroker.config.ACCESS_LOGGER``
(``"authbroker.daemon.access"``, a documented contract the demo and the tests read): the
method, a sanitised correlation id, the outcome and the duration, never a request or response
body. Answered routine calls (the table's ``routine`` rows) are DEBUG, everything else INFO.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, HeaderFields, Message, new_signal

from authbroker import broker1, config
from authbroker.broker1.introspect import introspection_xml, parent_node_xml
from authbroker.broker1.memo import IdentityMemo, TextMemo
from authbroker.broker1.methods import BY_NAME, MethodSpec
from authbroker.daemon.audit import AuditLog
from authbroker.daemon.bus import (
    ERR_UNKNOWN_INTERFACE,
    ERR_UNKNOWN_METHOD,
    ERR_UNKNOWN_OBJECT,
    BusEndpoint,
    default_bus,
    machine_id,
)
from authbroker.daemon.handler import CallContext, Handler
from authbroker.errors import BrokerProtocolError, BrokerStatusError, NameTakenError

log = logging.getLogger(__name__)
access_log = logging.getLogger(config.ACCESS_LOGGER)

#: Calls served at once (sign-ins aside: they mostly wait on a person); more take turns.
MAX_CALLS_IN_FLIGHT = 64
#: Calls waiting for their turn; beyond this a caller gets a "busy" error object at once.
MAX_CALLS_QUEUED = 4096
_OUR_INTERFACES = frozenset(spec.interface for spec in broker1.METHODS.values())
#: Calls that run a sign-in: cancelled when their caller leaves the bus.
_SIGNS_IN = frozenset({broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY,
                       broker1.UiMethod.REGISTER_DEVICE})
_SAFE_ID = re.compile(r"[^A-Za-z0-9._:-]")


def safe_id(value: object) -> str:
    """A correlation id fit for a log line (callers choose it: no newlines, bounded length)."""
    return _SAFE_ID.sub("?", value)[:64] if isinstance(value, str) else "?"


def _where(exc: BaseException) -> str:
    """File:line of where an exception was raised — loggable, unlike its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))


class _Refused(Exception):
    """A call refused before it reached the handler (``outcome`` is for the log)."""

    def __init__(self, error: BrokerStatusError, *, outcome: str) -> None:
        super().__init__(error.context)
        self.error = error
        self.outcome = outcome


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
        audit_log: AuditLog | None = None,
    ) -> None:
        self.handler = handler
        self.audit = audit_log  # token calls refused here, before the core sees them
        self.bus = bus or default_bus()
        self.bus_name = bus_name
        self.expected_uid = os.getuid() if expected_uid is None else expected_uid
        self.idle_exit = idle_exit
        self.endpoint = BusEndpoint(self.bus, self._serve)
        self._requests: TextMemo[broker1.Request] = TextMemo()  # repeated silent calls
        self._encoded: IdentityMemo[str] = IdentityMemo()  # the core's cached results
        self._turns = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)

    @property
    def unique_name(self) -> str:
        return self.endpoint.unique_name

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, start receiving, then own the name. NameTakenError if someone else has it."""
        await self.endpoint.connect()
        if not await self.endpoint.request_name(self.bus_name):
            pid = await self.endpoint.owner_pid(self.bus_name)
            await self.aclose()
            raise NameTakenError(
                f"{self.bus_name} is already owned on this bus"
                + (f" by process {pid}" if pid is not None else ""),
                hint="another broker (Microsoft's identity broker or another authbroker daemon) "
                "is running; stop it first",
            )
        log.info("serving %s at %s as %s (uid %d)", self.bus_name, broker1.OBJECT_PATH,
                 self.unique_name, self.expected_uid)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, the bus goes away or the idle timeout passes."""
        if not self.endpoint.connected:
            await self.start()
        receiver = self.endpoint.receiver
        assert receiver is not None
        waiters = [asyncio.create_task(self.endpoint.closed.wait()), receiver]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        if self.idle_exit is not None:
            waiters.append(asyncio.create_task(self._idle_watch(self.idle_exit)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not receiver:
                    waiter.cancel()
            await self.aclose()

    async def aclose(self) -> None:
        """Give up the name, finish (or answer) running calls, disconnect. Idempotent."""
        if not self.endpoint.connected:
            return
        await self.endpoint.aclose(self.bus_name)
        log.info("stopped serving %s", self.bus_name)

    async def __aenter__(self) -> BrokerService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _idle_watch(self, idle_s: float) -> None:
        quiet = await self.endpoint.idle(idle_s)
        log.info("idle for %.0f s: exiting (the bus starts us again on demand)", quiet)

    async def uid_of(self, sender: str) -> int:
        """The caller's uid as the bus knows it (cached)."""
        return await self.endpoint.uid_of(sender)

    # -- routing -----------------------------------------------------------------------------

    async def _serve(self, msg: Message) -> None:
        fields = msg.header.fields
        path = fields.get(HeaderFields.path, "")
        interface = fields.get(HeaderFields.interface)
        member = fields.get(HeaderFields.member, "")
        spec = BY_NAME.get(member)
        bus = self.endpoint
        try:
            if interface == broker1.PEER_INTERFACE or (interface is None and member in (
                    "Ping", "GetMachineId")):
                await self._serve_peer(msg, member)
            elif interface == broker1.INTROSPECTABLE_INTERFACE or (
                    interface is None and member == "Introspect"):
                await self._serve_introspect(msg, path, member)
            elif spec is not None and interface in (spec.interface, None):
                if path != broker1.OBJECT_PATH:
                    await bus.error(msg, ERR_UNKNOWN_OBJECT, f"no object at {path}")
                else:
                    await self._serve_broker_call(msg, spec)
            elif interface in _OUR_INTERFACES:
                await bus.error(msg, ERR_UNKNOWN_METHOD, f"{interface} has no method {member!r}")
            elif path != broker1.OBJECT_PATH and parent_node_xml(path) is None:
                await bus.error(msg, ERR_UNKNOWN_OBJECT, f"no object at {path}")
            else:
                await bus.error(msg, ERR_UNKNOWN_INTERFACE if interface else ERR_UNKNOWN_METHOD,
                                f"{interface or ''} {member} is not implemented here".strip())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one call take the daemon down
            log.error("unexpected %s while serving %s.%s at %s", type(exc).__name__,
                      interface, member, _where(exc))

    async def _serve_peer(self, msg: Message, member: str) -> None:
        if member == "Ping":
            await self.endpoint.reply(msg)
        elif member == "GetMachineId":
            await self.endpoint.reply(msg, "s", (machine_id(),))
        else:
            await self.endpoint.error(msg, ERR_UNKNOWN_METHOD, f"Peer has no method {member!r}")

    async def _serve_introspect(self, msg: Message, path: str, member: str) -> None:
        if member != "Introspect":
            await self.endpoint.error(msg, ERR_UNKNOWN_METHOD, f"no method {member!r}")
        elif path == broker1.OBJECT_PATH:
            await self.endpoint.reply(msg, "s", (introspection_xml(),))
        elif (xml := parent_node_xml(path)) is not None:
            await self.endpoint.reply(msg, "s", (xml,))
        else:
            await self.endpoint.error(msg, ERR_UNKNOWN_OBJECT, f"no object at {path}")

    # -- the Broker1 call path ---------------------------------------------------------------

    async def _serve_broker_call(self, msg: Message, spec: MethodSpec) -> None:
        method = spec.method
        started = time.monotonic()
        sender = msg.header.fields.get(HeaderFields.sender, "")
        signature = msg.header.fields.get(HeaderFields.signature, "")
        body = msg.body if isinstance(msg.body, tuple) else ()
        at = spec.correlation_index
        correlation_id = body[at] if len(body) > at and isinstance(body[at], str) else ""
        outcome = "ok"
        try:
            reply = await self._broker_reply(spec, sender, signature, body, correlation_id)
        except asyncio.CancelledError:
            reply = broker1.encode(broker1.error_reply(BrokerStatusError(
                broker1.Status.TRANSIENT_ERROR, "the broker is shutting down; try again",
                tag="service.shutdown"), method))
            self._log_call(spec, correlation_id, started,
                           f"status {int(broker1.Status.TRANSIENT_ERROR)} (shutdown)")
            await asyncio.shield(self.endpoint.reply(msg, "s", (reply,)))
            raise
        except BrokerStatusError as exc:
            reply = broker1.encode(broker1.error_reply(exc, method))
            outcome = f"status {int(exc.status)}"
        except _Refused as exc:
            reply = broker1.encode(broker1.error_reply(exc.error, method))
            outcome = exc.outcome
            if self.audit is not None and spec.token_call:
                await self._audit_refusal(spec, sender, correlation_id, exc.error, started)
        except Exception as exc:
            log.error("%s correlation=%s failed with unexpected %s at %s", method.value,
                      safe_id(correlation_id), type(exc).__name__, _where(exc))
            reply = broker1.encode(broker1.error_reply(BrokerStatusError(
                broker1.Status.UNEXPECTED,
                f"internal broker error ({type(exc).__name__}); see the broker's log",
                tag="service.unexpected"), method))
            outcome = f"status {int(broker1.Status.UNEXPECTED)} (internal error)"
        self._log_call(spec, correlation_id, started, outcome)  # before the caller can see it
        await self.endpoint.reply(msg, "s", (reply,))

    async def _broker_reply(self, spec: MethodSpec, sender: str, signature: str,
                            body: tuple[Any, ...], correlation_id: str) -> str:
        method = spec.method
        # A burst waits its turn (a well-behaved client is never refused a cached token because
        # others asked at the same moment); only a backlog past MAX_CALLS_QUEUED is refused.
        if self.endpoint.in_flight > MAX_CALLS_IN_FLIGHT + MAX_CALLS_QUEUED:
            raise _Refused(BrokerStatusError(
                broker1.Status.TRANSIENT_ERROR, "the broker is busy with too many calls; try again",
                tag="service.busy"), outcome=f"status {int(broker1.Status.TRANSIENT_ERROR)} (busy)")
        if method is broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY:
            return await self._served(spec, sender, signature, body, correlation_id)
        async with self._turns:
            return await self._served(spec, sender, signature, body, correlation_id)

    async def _served(self, spec: MethodSpec, sender: str, signature: str,
                      body: tuple[Any, ...], correlation_id: str) -> str:
        method = spec.method
        uid = await self._caller_uid(sender)
        violation = f"status {int(broker1.Status.API_CONTRACT_VIOLATION)}"
        if signature != spec.signature:
            raise _Refused(BrokerStatusError(
                broker1.Status.API_CONTRACT_VIOLATION,
                f"{method.value} takes {spec.describe_args()}, not D-Bus signature "
                f"{signature!r}", tag="service.signature"), outcome=violation)
        try:
            request = self._requests.get(method, body[-1], partial(broker1.parse_request, method))
        except BrokerProtocolError as exc:
            raise _Refused(BrokerStatusError(broker1.Status.API_CONTRACT_VIOLATION,
                                             f"malformed {method.value} request: {exc}",
                                             tag="service.parse"), outcome=violation) from None
        signs_in = method in _SIGNS_IN and bool(sender)
        ctx = CallContext(  # the handler logs the id: give it the log-safe form
            correlation_id=safe_id(correlation_id), sender=sender, uid=uid,
            pid=await self.endpoint.pid_of(sender) if sender else None,
            announce_device_code=partial(self._announce, sender, correlation_id),
        )
        if signs_in:
            async with self.endpoint.watching(sender, self._caller_left):
                result = await self.handler.handle(method, request, ctx)
        else:
            result = await self.handler.handle(method, request, ctx)
        return self._encoded.get(result, lambda r: broker1.encode(r.to_wire()))

    async def _caller_uid(self, sender: str) -> int:
        """The caller's uid, which must be ours (``_Refused`` otherwise)."""
        try:
            uid = await self.endpoint.uid_of(sender)
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
        return uid

    async def _audit_refusal(self, spec: MethodSpec, sender: str, correlation_id: str,
                             error: BrokerStatusError, started: float) -> None:
        """The audit line of a token call refused before its request reached the core."""
        assert self.audit is not None
        try:
            pid = await self.endpoint.pid_of(sender) if sender else None
        except Exception:  # the caller may be gone already: the line still says who asked
            pid = None
        ctx = CallContext(correlation_id=safe_id(correlation_id), sender=sender, pid=pid)
        self.audit.refused(spec.method, ctx, None, None, error, started)

    def _caller_left(self, sender: str) -> None:
        cancelled = self.handler.caller_left(sender)
        log.info("caller %s left the bus: %d sign-in(s) cancelled", sender, cancelled)

    async def _announce(self, destination: str, correlation_id: str,
                        prompt: broker1.DeviceCodePrompt) -> None:
        """Send the device-code prompt to the caller only (a unicast signal)."""
        emitter = DBusAddress(broker1.OBJECT_PATH, interface=broker1.EXTENSION_INTERFACE)
        signal = new_signal(emitter, broker1.DEVICE_CODE_SIGNAL, "ss",
                            (correlation_id, json.dumps(prompt.to_wire())))
        if destination:
            signal.header.fields[HeaderFields.destination] = destination
        await self.endpoint.send(signal)
        log.info("device-code prompt sent to %s (correlation %s)", destination,
                 safe_id(correlation_id))

    def _log_call(self, spec: MethodSpec, correlation_id: str, started: float,
                  outcome: str) -> None:
        # Answered routine calls (silent tokens, account lists) are the hot path: DEBUG, so a
        # busy broker's log stays readable and cheap. Sign-ins and every failure stay at INFO.
        level = logging.DEBUG if outcome == "ok" and spec.routine else logging.INFO
        if access_log.isEnabledFor(level):
            access_log.log(level, "%s correlation=%s %s in %.1f ms", spec.method.value,
                           safe_id(correlation_id), outcome, (time.monotonic() - started) * 1000)
