"""The daemon's bus connection: our own receive loop, the well-known name, bus calls, callers' uids.

One receive loop (jeepney's asyncio ``DBusConnection`` + its ``ReplyMatcher``, not
``DBusRouter``) reads every message. It is running before ``RequestName`` is sent, so the call
that activated us (usually pymsalruntime's ``Peer.Ping``), which the bus may deliver before the
``RequestName`` reply, is never lost, and losing the bus ends the loop instead of a hidden
task. Each method call runs as its own task (``on_call``); replies to our own bus calls go to
their waiters. Nothing here knows Broker1.

Callers can be watched while something runs for them (:meth:`BusEndpoint.watching`, used for
sign-ins): a match on the bus's ``NameOwnerChanged`` for that unique name, and ``on_gone(name)``
is called as soon as it leaves the bus (at once if it already has).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from jeepney import (
    HeaderFields,
    MatchRule,
    Message,
    MessageFlag,
    MessageType,
    new_error,
    new_method_return,
)
from jeepney.bus_messages import message_bus
from jeepney.io.asyncio import DBusConnection, open_dbus_connection
from jeepney.io.common import ReplyMatcher
from jeepney.wrappers import unwrap_msg

from authbroker.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

# RequestName flags and replies (D-Bus specification)
_DO_NOT_QUEUE = 0x4
_PRIMARY_OWNER, _ALREADY_OWNER = 1, 4

ERR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_UNKNOWN_INTERFACE = "org.freedesktop.DBus.Error.UnknownInterface"

BUS_CALL_TIMEOUT_S = 10.0
_BUS_NAME = "org.freedesktop.DBus"
_UID_CACHE_SIZE = 512


def default_bus() -> str:
    """The bus we were activated on (``DBUS_STARTER_ADDRESS``), else the session bus."""
    return os.environ.get("DBUS_STARTER_ADDRESS") or "SESSION"


def machine_id() -> str:
    """What ``Peer.GetMachineId`` answers ("" when the machine has none)."""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            value = Path(candidate).read_text().strip()
            if value:
                return value
    return ""


class BusEndpoint:
    """A connection to ``bus`` whose method calls go to ``on_call``, one task each."""

    def __init__(self, bus: str, on_call: Callable[[Message], Coroutine[Any, Any, None]]) -> None:
        self.bus = bus
        self._on_call = on_call
        self._conn: DBusConnection | None = None
        self._replies = ReplyMatcher()
        self._uids: OrderedDict[str, int] = OrderedDict()
        self._pids: OrderedDict[str, int | None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self.receiver: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()
        #: Set once :meth:`aclose` has disconnected.
        self.closed = asyncio.Event()
        self.unique_name = ""
        #: Watched unique names: their ``on_gone`` callbacks, one per running watch.
        self._watches: dict[str, list[Callable[[str], None]]] = {}

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def in_flight(self) -> int:
        """Method calls received and not yet finished (this one included, from inside one)."""
        return len(self._tasks)

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and start receiving. BrokerUnavailableError when there is no bus."""
        try:
            self._conn = await open_dbus_connection(self.bus)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise BrokerUnavailableError(
                f"cannot connect to the D-Bus session bus ({type(exc).__name__})",
                hint="is DBUS_SESSION_BUS_ADDRESS set and the bus running?",
            ) from exc
        self.unique_name = self._conn.unique_name or ""
        self.receiver = asyncio.create_task(self._receive_loop(), name="dbus-receiver")

    async def request_name(self, name: str) -> bool:
        """Own ``name`` (never queued); False when someone else owns it."""
        reply = await self.call(message_bus.RequestName(name, _DO_NOT_QUEUE))
        return reply[0] in (_PRIMARY_OWNER, _ALREADY_OWNER)

    async def owner_pid(self, name: str) -> int | None:
        """The process owning ``name``, if the bus says."""
        try:
            (pid,) = await self.call(message_bus.GetConnectionUnixProcessID(name), timeout=2.0)
            return int(pid)
        except Exception:
            return None

    async def aclose(self, name: str) -> None:
        """Give up ``name``, finish (or cancel) running calls, disconnect. Idempotent."""
        if self._conn is None:
            return
        if self.receiver is not None and not self.receiver.done():
            # Release first: calls already routed to us are read before the reply arrives.
            with contextlib.suppress(Exception):
                await self.call(message_bus.ReleaseName(name), timeout=2.0)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()  # each cancelled call still sends its error reply
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self.receiver is not None:
            self.receiver.cancel()
            with contextlib.suppress(BaseException):
                await self.receiver
        conn, self._conn = self._conn, None
        with contextlib.suppress(Exception):
            await conn.close()
        self.closed.set()

    async def idle(self, idle_s: float) -> float:
        """Return once no call has run for ``idle_s`` seconds: how long it was quiet."""
        while True:
            quiet = time.monotonic() - self._last_activity
            if not self._tasks and quiet >= idle_s:
                return quiet
            await asyncio.sleep(max(0.05, idle_s - quiet) if not self._tasks else idle_s)

    # -- receiving ---------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        assert self._conn is not None
        try:
            while True:
                msg = await self._conn.receive()
                if self._replies.dispatch(msg):
                    continue
                if msg.header.message_type is MessageType.signal:
                    self._on_signal(msg)
                    continue
                if msg.header.message_type is MessageType.method_call:
                    self._last_activity = time.monotonic()
                    task = asyncio.create_task(self._on_call(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._call_finished)
        except (EOFError, ConnectionError, OSError) as exc:
            log.error("lost the D-Bus connection (%s): stopping", type(exc).__name__)
        finally:
            self._replies.drop_all()

    def _call_finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._last_activity = time.monotonic()

    # -- watching callers --------------------------------------------------------------------

    @staticmethod
    def _owner_rule(name: str) -> MatchRule:
        rule = MatchRule(type="signal", sender=_BUS_NAME, interface=_BUS_NAME,
                         member="NameOwnerChanged", path="/org/freedesktop/DBus")
        rule.add_arg_condition(0, name)
        return rule

    @contextlib.asynccontextmanager
    async def watching(self, name: str, on_gone: Callable[[str], None]) -> AsyncIterator[None]:
        """While the block runs, ``on_gone(name)`` is called once ``name`` leaves the bus."""
        callbacks = self._watches.setdefault(name, [])
        callbacks.append(on_gone)
        try:
            if len(callbacks) == 1:
                await self.call(message_bus.AddMatch(self._owner_rule(name)))
            # it may have left before the match was in place
            (present,) = await self.call(message_bus.NameHasOwner(name))
            if not present:
                asyncio.get_running_loop().call_soon(self._gone, name)
        except Exception as exc:  # the call still runs; only the early cancel is lost
            log.warning("cannot watch %s on the bus (%s)", name, type(exc).__name__)
        try:
            yield
        finally:
            callbacks.remove(on_gone)
            if not callbacks:
                del self._watches[name]
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await self.call(message_bus.RemoveMatch(self._owner_rule(name)),
                                        timeout=2.0)

    def _on_signal(self, msg: Message) -> None:
        fields = msg.header.fields
        if fields.get(HeaderFields.member) != "NameOwnerChanged" \
                or fields.get(HeaderFields.sender) != _BUS_NAME:
            return
        body = msg.body
        if isinstance(body, tuple) and len(body) == 3 and body[2] == "" and body[0] in \
                self._watches:
            self._gone(body[0])

    def _gone(self, name: str) -> None:
        callbacks = self._watches.get(name, [])
        if callbacks:
            log.info("%s left the bus", name)
        for on_gone in list(callbacks):
            try:
                on_gone(name)
            except Exception as exc:
                log.error("handling %s leaving failed: %s", name, type(exc).__name__)

    # -- sending -----------------------------------------------------------------------------

    async def call(self, msg: Message, timeout: float = BUS_CALL_TIMEOUT_S) -> tuple[Any, ...]:
        """A call to the bus (or anyone): the reply's body; the receive loop delivers it."""
        assert self._conn is not None
        serial = next(self._conn.outgoing_serial)
        with self._replies.catch(serial, asyncio.get_running_loop().create_future()) as fut:
            await self._conn.send(msg, serial=serial)
            reply = await asyncio.wait_for(fut, timeout)
        body: tuple[Any, ...] = unwrap_msg(reply)
        return body

    async def uid_of(self, sender: str) -> int:
        """The caller's uid as the bus knows it (cached per unique name; names are not reused)."""
        uid = self._uids.get(sender)
        if uid is None:
            (uid,) = await self.call(message_bus.GetConnectionUnixUser(sender))
            self._uids[sender] = uid
            if len(self._uids) > _UID_CACHE_SIZE:
                self._uids.popitem(last=False)
        else:
            self._uids.move_to_end(sender)
        return int(uid)

    async def pid_of(self, sender: str) -> int | None:
        """The caller's pid as the bus knows it (cached per unique name), None if unknown."""
        if sender in self._pids:
            self._pids.move_to_end(sender)
            return self._pids[sender]
        pid = await self.owner_pid(sender)
        self._pids[sender] = pid
        if len(self._pids) > _UID_CACHE_SIZE:
            self._pids.popitem(last=False)
        return pid

    async def send(self, msg: Message) -> None:
        """Send ``msg`` if still connected; a failure is logged, not raised."""
        if self._conn is None:
            return
        try:
            await self._conn.send(msg)
        except (ConnectionError, OSError) as exc:
            log.warning("could not send a reply (%s)", type(exc).__name__)

    async def reply(self, call: Message, signature: str | None = None,
                    body: tuple[Any, ...] = ()) -> None:
        if not call.header.flags & MessageFlag.no_reply_expected:
            await self.send(new_method_return(call, signature, body))

    async def error(self, call: Message, name: str, text: str) -> None:
        if not call.header.flags & MessageFlag.no_reply_expected:
            await self.send(new_error(call, name, "s", (text,)))
