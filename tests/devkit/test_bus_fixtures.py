"""The private bus and throwaway keyring fixtures work as the daemon tests expect."""

from __future__ import annotations

import os
import sys
import time
from contextlib import closing
from pathlib import Path

import secretstorage
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection
from jeepney.wrappers import unwrap_msg

from fixtures.bus import PrivateBus, SecretService, private_bus

# A minimal activatable service: owns the name given in argv[1], writes $MARKER to argv[2],
# answers every method call with an empty reply (so Peer.Ping works), exits on SIGTERM.
_SERVICE = """
import os, sys
from jeepney import new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from jeepney.low_level import MessageType
conn = open_dbus_connection()
# send, not send_and_get_reply: that would drop the Ping queued for us during activation
conn.send(message_bus.RequestName(sys.argv[1]))
with open(sys.argv[2], "w") as fh:
    fh.write(os.environ.get("MARKER", "<unset>"))
while True:
    msg = conn.receive()
    if msg.header.message_type == MessageType.method_call:
        conn.send(new_method_return(msg))
"""


def _ping(address: str, name: str, path: str) -> None:
    peer = DBusAddress(path, bus_name=name, interface="org.freedesktop.DBus.Peer")
    with closing(open_dbus_connection(address)) as conn:
        unwrap_msg(conn.send_and_get_reply(new_method_call(peer, "Ping"), timeout=5))


def test_private_bus_answers_ping_and_owns_the_environment(dbus_session: PrivateBus) -> None:
    assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == dbus_session.address
    assert dbus_session.env["DBUS_SESSION_BUS_ADDRESS"] == dbus_session.address
    _ping(dbus_session.address, "org.freedesktop.DBus", "/org/freedesktop/DBus")
    # the default connection (what clients and the daemon open) lands on the same bus
    with closing(open_dbus_connection()) as conn:
        assert conn.unique_name.startswith(":")


def test_private_bus_is_stopped_and_environment_restored() -> None:
    before = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    with private_bus() as bus:
        assert os.environ["DBUS_SESSION_BUS_ADDRESS"] == bus.address
        proc, base = bus.process, bus.dir
    assert os.environ.get("DBUS_SESSION_BUS_ADDRESS") == before
    assert proc.poll() is not None
    assert not base.exists()


def test_activation_from_a_service_file(dbus_session: PrivateBus, tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(_SERVICE)
    marker = tmp_path / "marker"
    name = "org.authbroker.Test.Activated"
    dbus_session.write_service_file(name, [sys.executable, str(script), name, str(marker)])
    dbus_session.update_activation_environment({"MARKER": "from-activation-env"})
    assert not dbus_session.name_has_owner(name)
    started = time.monotonic()
    dbus_session.ping(name)  # the bus starts the service, then delivers the Ping
    elapsed = time.monotonic() - started
    assert dbus_session.name_has_owner(name)
    assert marker.read_text() == "from-activation-env"
    assert elapsed < 5


def test_secret_service_stores_and_returns_a_secret(secret_service: SecretService) -> None:
    attributes = {"application": "authbroker-tests", "purpose": "round-trip"}
    with closing(secretstorage.dbus_init()) as conn:  # via os.environ: the private bus
        collection = secretstorage.get_default_collection(conn)
        assert not collection.is_locked()
        collection.create_item("round trip", attributes, b"s3cret-value", replace=True)
    # a second, independent connection sees it
    assert secret_service.secrets(attributes) == [b"s3cret-value"]
    assert secret_service.collection_label == "Login"
