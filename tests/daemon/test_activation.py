"""The real ``authbroker daemon`` on a private bus: activation, stdout, signals, idle exit."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

from authbroker import broker1
from authbroker.client import BrokerClient
from authbroker.errors import BrokerStatusError
from fixtures.daemon import DaemonProcess, daemon_argv

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def store_argv(tmp_path: Path, *extra: str) -> list[str]:
    return daemon_argv(*extra, store=tmp_path / "store.enc")


def own_daemon(bus, tmp_path: Path, *extra: str) -> DaemonProcess:
    return DaemonProcess(bus, bus.env, tmp_path, *extra, store=tmp_path / "store.enc")


def owner_pid(bus) -> int:
    return int(bus.call_bus("GetConnectionUnixProcessID", broker1.BUS_NAME)[0])


def wait_gone(bus, pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while bus.name_has_owner(broker1.BUS_NAME) or _alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"daemon {pid} still running")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # an exited child of the bus is reaped by the bus; a zombie counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def timed_first_ping(bus) -> float:
    addr = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                       interface=broker1.PEER_INTERFACE)
    with closing(open_dbus_connection(bus.address)) as conn:
        started = time.monotonic()
        reply = conn.send_and_get_reply(new_method_call(addr, "Ping"), timeout=10)
        elapsed = time.monotonic() - started
    assert reply.header.message_type is MessageType.method_return, reply.body
    return elapsed


def test_dbus_activation_answers_the_first_ping_fast(dbus_session, tmp_path):
    dbus_session.write_service_file(broker1.BUS_NAME, store_argv(tmp_path))
    assert not dbus_session.name_has_owner(broker1.BUS_NAME)
    elapsed = timed_first_ping(dbus_session)
    pid = owner_pid(dbus_session)
    try:
        print(f"activation to first answered Ping: {elapsed * 1000:.0f} ms")
        assert elapsed < 1.0
        with BrokerClient(timeout=30) as client:  # the core is ready shortly after
            assert client.get_accounts(CLIENT_ID) == []
            assert client.get_linux_broker_version() == broker1.BROKER_VERSION
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_gone(dbus_session, pid)


def test_a_broker1_call_activates_the_daemon(dbus_session, tmp_path):
    """pymsalruntime's first call may be a Broker1 method rather than a Ping."""
    dbus_session.write_service_file(broker1.BUS_NAME, store_argv(tmp_path))
    with BrokerClient(timeout=30) as client:
        assert client.get_accounts(CLIENT_ID) == []
    pid = owner_pid(dbus_session)
    os.kill(pid, signal.SIGTERM)
    wait_gone(dbus_session, pid)


def test_idle_exit_then_reactivation(dbus_session, tmp_path):
    dbus_session.write_service_file(broker1.BUS_NAME, store_argv(tmp_path, "--idle-exit", "0.5"))
    timed_first_ping(dbus_session)
    first = owner_pid(dbus_session)
    wait_gone(dbus_session, first, timeout=10)
    timed_first_ping(dbus_session)  # the bus starts a fresh one on demand
    second = owner_pid(dbus_session)
    assert second != first
    os.kill(second, signal.SIGTERM)
    wait_gone(dbus_session, second)


def test_daemon_never_writes_stdout_and_stops_cleanly_on_sigterm(
        dbus_session, tmp_path, started_daemons):
    proc = own_daemon(dbus_session, tmp_path, "-v")
    started_daemons.append(proc)
    proc.start()
    with BrokerClient(timeout=30) as client:
        client.ping()
        assert client.get_accounts(CLIENT_ID) == []
        with pytest.raises(BrokerStatusError) as info:
            client.acquire_token_silently(broker1.AuthParameters(client_id=CLIENT_ID,
                                                             requested_scopes=("User.Read",)))
        assert info.value.status in (broker1.Status.INTERACTION_REQUIRED,
                                     broker1.Status.ACCOUNT_UNUSABLE)
    with closing(open_dbus_connection(dbus_session.address)) as conn:
        bad = new_method_call(DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                                          interface=broker1.INTERFACE),
                              "acquireTokenSilently", "sss", ("0.0", "c", "{oops"))
        reply = json.loads(conn.send_and_get_reply(bad, timeout=10).body[0])
        status = reply["brokerTokenResponse"]["error"]["status"]
        assert status == broker1.Status.API_CONTRACT_VIOLATION
    proc.stop(signal.SIGTERM)
    out, err = proc.stdout_text(), proc.log_text()
    assert proc.returncode == 0, err
    assert out == ""
    assert "stopped serving" in err
    assert not dbus_session.name_has_owner(broker1.BUS_NAME)


def test_sigint_also_stops_cleanly(dbus_session, tmp_path, started_daemons):
    proc = own_daemon(dbus_session, tmp_path)
    started_daemons.append(proc)
    proc.start()
    proc.stop(signal.SIGINT)
    out = proc.stdout_text()
    assert proc.returncode == 0 and out == ""


def test_a_second_daemon_exits_with_a_clear_error(dbus_session, tmp_path, started_daemons):
    first = own_daemon(dbus_session, tmp_path)
    started_daemons.append(first)
    first.start()
    second = subprocess.run(store_argv(tmp_path / "other"), env=dbus_session.env,
                            capture_output=True, timeout=30)
    assert second.returncode == 3
    assert second.stdout == b""
    assert f"{broker1.BUS_NAME} is already owned".encode() in second.stderr
    assert f"process {first.pid}".encode() in second.stderr
    with closing(open_dbus_connection(dbus_session.address)) as conn:
        owner = Proxy(message_bus, conn).GetConnectionUnixProcessID(broker1.BUS_NAME)[0]
    assert owner == first.pid  # the first one keeps serving


@pytest.mark.timeout(180)
@pytest.mark.skipif(importlib.util.find_spec("pymsalruntime") is None,
                    reason="pymsalruntime is not installed")
def test_pymsalruntime_import_activates_the_daemon(dbus_session, secret_service, authority,
                                                   tmp_path):
    """Microsoft's stack with no broker running: its import-time Ping starts ours on demand."""
    dbus_session.update_activation_environment({
        "AUTHBROKER_AUTHORITY": authority.authority,
        "REQUESTS_CA_BUNDLE": authority.ca_bundle, "CURL_CA_BUNDLE": authority.ca_bundle,
        "BROWSER": f"{sys.executable} -m authbroker.devkit.useragent %s",
        "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
    })
    dbus_session.write_service_file(broker1.BUS_NAME, store_argv(tmp_path))
    assert not dbus_session.name_has_owner(broker1.BUS_NAME)
    client_env = dict(dbus_session.env, BROWSER="/bin/false %s",  # no silent browser fallback
                      REQUESTS_CA_BUNDLE=authority.ca_bundle, CURL_CA_BUNDLE=authority.ca_bundle)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "fixtures" / "msal_client.py"),
         authority.authority,
         authority.tenant_id, CLIENT_ID, "https://storage.azure.com/.default", "select"],
        env=client_env, capture_output=True, text=True, timeout=150)
    pid = owner_pid(dbus_session)
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        [select] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert select["error"] is None, select
        assert select["token_source"] == "broker"
        assert select["username"] == "user@contoso.example"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_gone(dbus_session, pid)
