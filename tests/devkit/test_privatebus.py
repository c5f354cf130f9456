"""devkit's PrivateBus on its own: start, address, env, session, stop (demo, tests, benchmarks)."""

from __future__ import annotations

import os
from contextlib import closing

import pytest
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy

from authbroker.devkit.privatebus import SESSION_BUS_VAR, PrivateBus, bus_config
from authbroker.devkit.processes import StartError


def test_a_bus_without_services_answers_and_is_removed_at_stop(monkeypatch) -> None:
    monkeypatch.setenv("DBUS_STARTER_ADDRESS", "unix:path=/nonexistent")
    before = os.environ.get(SESSION_BUS_VAR)
    with PrivateBus(services=False) as bus:
        assert bus.address == f"unix:path={bus.dir / 'bus'}"
        assert "<servicedir>" not in (bus.dir / "bus.conf").read_text()
        assert bus.services_dir is None
        # its environment: ours, pointed at it, without the variables naming another bus
        assert bus.env[SESSION_BUS_VAR] == bus.address
        assert "DBUS_STARTER_ADDRESS" not in bus.env
        assert os.environ.get(SESSION_BUS_VAR) == before  # untouched unless asked
        assert bus.name_has_owner("org.freedesktop.DBus")
        bus.ping("org.freedesktop.DBus", "/org/freedesktop/DBus")
        proc, base = bus.process, bus.dir
    assert proc.poll() is not None and not base.exists()


def test_session_points_os_environ_at_the_bus_until_the_block_ends(monkeypatch) -> None:
    monkeypatch.setenv("DBUS_STARTER_BUS_TYPE", "session")
    before = os.environ.get(SESSION_BUS_VAR)
    with PrivateBus(services=False) as bus:
        with bus.session():
            assert os.environ[SESSION_BUS_VAR] == bus.address
            assert "DBUS_STARTER_BUS_TYPE" not in os.environ
        assert os.environ.get(SESSION_BUS_VAR) == before
        assert os.environ["DBUS_STARTER_BUS_TYPE"] == "session"


def test_names_owned_and_released_and_their_owner(tmp_path) -> None:
    with PrivateBus(env={"PATH": os.environ["PATH"]}) as bus:
        assert bus.env == {"PATH": os.environ["PATH"], SESSION_BUS_VAR: bus.address}
        assert (bus.dir / "services").is_dir()
        with closing(bus.connect()) as conn:
            Proxy(message_bus, conn, timeout=5).RequestName("org.authbroker.Test.Owned")
            bus.wait_for_name("org.authbroker.Test.Owned", timeout=5)
            assert bus.owner_pid("org.authbroker.Test.Owned") == os.getpid()
        bus.wait_for_name("org.authbroker.Test.Owned", owned=False, timeout=5)
        with pytest.raises(TimeoutError, match="nobody owns"):
            bus.wait_for_name("org.authbroker.Test.Nobody", timeout=0.1)


def test_without_dbus_daemon_start_says_so_and_leaves_nothing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    bus = PrivateBus()
    with pytest.raises(StartError, match="dbus-daemon is not installed"):
        bus.start()
    assert not bus.dir.exists()


def test_bus_config_lists_the_services_dir_only_when_given(tmp_path) -> None:
    assert "<servicedir>" not in bus_config(tmp_path / "bus")
    assert f"<servicedir>{tmp_path}</servicedir>" in bus_config(tmp_path / "bus", tmp_path)
