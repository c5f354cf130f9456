"""The baseline for the daemon benchmark: a D-Bus service that answers every call at once.

It owns a name of its own, exports the Broker1 method signature (``sss -> s``) on the Broker1
object path and replies with a fixed JSON text of a given size — a raw D-Bus round trip with the
same payload as a silent token call, and nothing else. Same library (jeepney, asyncio) as the
daemon, so the difference between the two is the daemon's own work.

Run: ``python -m benchmarks.echo_service BUS_NAME REPLY_FILE``; prints "ready" on stderr.
"""

from __future__ import annotations

import asyncio
import sys

from jeepney import DBusAddress, MessageType, new_error, new_method_call, new_method_return
from jeepney.io.asyncio import open_dbus_connection

DBUS = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                   interface="org.freedesktop.DBus")


async def serve(name: str, reply: str) -> None:
    conn = await open_dbus_connection(bus="SESSION")
    await conn.send(new_method_call(DBUS, "RequestName", "su", (name, 4)))
    while True:
        msg = await conn.receive()
        if msg.header.message_type == MessageType.method_return:
            print("ready", file=sys.stderr, flush=True)
            continue
        if msg.header.message_type != MessageType.method_call:
            continue
        if msg.header.fields.get(3) == "Ping":  # org.freedesktop.DBus.Peer
            await conn.send(new_method_return(msg))
        elif msg.header.fields.get(8) == "sss":  # Broker1 calling convention
            await conn.send(new_method_return(msg, "s", (reply,)))
        else:
            await conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    with open(sys.argv[2]) as fh:
        asyncio.run(serve(sys.argv[1], fh.read()))
