"""``authbroker device register | status | unregister``: real CLI processes, the real daemon on a
private bus, the local authority behind it: the exit codes a script relies on (status 2 when no
device is registered), the JSON fields, and no key material in anything printed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures.daemon import DaemonProcess, daemon_env

USER = "user@contoso.example"
CLI = [sys.executable, "-m", "authbroker"]
SECRET_MARKERS = ("PRIVATE KEY", "MII", "sessionKey", "session_key", "refresh_token")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def daemon_env_running(dbus_session, authority, tmp_path):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                     AUTHBROKER_UI="browser")
    daemon = DaemonProcess(dbus_session, env, tmp_path)
    daemon.start()
    try:
        yield env, daemon
    finally:
        daemon.stop()
        assert daemon.stdout_text() == ""


def test_register_status_unregister_exit_codes_and_json(daemon_env_running, authority) -> None:
    env, daemon = daemon_env_running
    none = cli(env, "device", "status", "--output", "json")
    assert none.returncode == 2, none.stderr

    done = cli(env, "device", "register", "--output", "json")
    assert done.returncode == 0, done.stderr
    registered = json.loads(done.stdout)["device"]
    device_id = json.dumps(registered)
    assert registered["prt"] == "active" and registered["tenantId"] == authority.tenant_id

    status = cli(env, "device", "status", "--output", "json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)["device"]
    assert shown["deviceId"] == registered["deviceId"] and shown["certificateNotAfter"] > 0
    human = cli(env, "device", "status")
    assert human.returncode == 0 and registered["deviceId"] in human.stdout

    gone = cli(env, "device", "unregister", "--output", "json")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["deletedAtAuthority"] is True
    after = cli(env, "device", "status")
    assert after.returncode == 2
    for proc in (done, status, human, gone, after):
        for marker in SECRET_MARKERS:
            assert marker not in proc.stdout + proc.stderr, (marker, device_id)
    for marker in SECRET_MARKERS[:2]:
        assert marker not in daemon.log_text()
