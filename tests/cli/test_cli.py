"""``authbroker accounts | login | token | logout`` and ``install-service``, as a person runs them:
real CLI processes, the real daemon on a private bus, the local authority behind it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest

from authbroker import broker1
from authbroker.daemon import install
from authbroker.devkit.useragent import device_login
from fixtures.daemon import DaemonProcess, daemon_env

SCOPE = "https://storage.azure.com/.default"
USER = "user@contoso.example"
SECOND = "second@contoso.example"
PASSWORD = "Passw0rd!"
CLI = [sys.executable, "-m", "authbroker"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(dbus_session, authority, tmp_path) -> dict[str, str]:
    return daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                      AUTHBROKER_UA_PASSWORD=PASSWORD, AUTHBROKER_UI="browser")


@contextmanager
def daemon(dbus_session, env: dict[str, str], tmp_path: Path,
           **overrides: str) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(dbus_session, dict(env, **overrides), tmp_path)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        assert proc.stdout_text() == "", "the daemon wrote to stdout"
        assert proc.returncode == 0, proc.log_text()[-2000:]


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_sign_in_token_accounts_logout_through_the_daemon(dbus_session, authority, env, tmp_path):
    with daemon(dbus_session, env, tmp_path):
        none = cli(env, "accounts")
        assert none.returncode == 0 and none.stdout == ""
        assert "no accounts" in none.stderr

        early = cli(env, "token", "--scope", SCOPE)
        assert early.returncode == 1 and early.stdout == ""
        assert f"authbroker login --scope {SCOPE}" in early.stderr

        login = cli(env, "login", "--scope", SCOPE)
        assert login.returncode == 0, login.stderr
        assert f"signed in as {USER}" in login.stdout

        token = cli(env, "token", "--scope", SCOPE)
        assert token.returncode == 0, token.stderr
        lines = token.stdout.splitlines()
        assert len(lines) == 1 and token.stdout.endswith("\n")
        claims = jwt.decode(lines[0], options={"verify_signature": False})
        assert claims["aud"].startswith("https://storage.azure.com")
        assert lines[0] not in token.stderr

        as_json = cli(env, "token", "--scope", SCOPE, "--output", "json")
        obj = json.loads(as_json.stdout)
        assert obj["tokenType"] == "Bearer" and obj["username"] == USER
        assert obj["expires_on"] > time.time() and obj["accessToken"].count(".") == 2

        listed = cli(env, "accounts")
        assert listed.returncode == 0 and USER in listed.stdout
        assert json.loads(cli(env, "accounts", "--output", "json").stdout)[0]["username"] == USER

        logout = cli(env, "logout")
        assert logout.returncode == 0 and f"signed out {USER}" in logout.stdout
        again = cli(env, "token", "--scope", SCOPE)
        assert again.returncode == 1 and again.stdout == ""


def test_device_code_login_several_accounts_and_restart(dbus_session, authority, env, tmp_path):
    with daemon(dbus_session, env, tmp_path):
        assert cli(env, "login", "--scope", SCOPE).returncode == 0
    # a new daemon, with the same store, asked to use device codes
    with daemon(dbus_session, env, tmp_path, AUTHBROKER_UI="device-code"):
        assert USER in cli(env, "accounts").stdout  # the store survived the restart
        shown: list[str] = []
        with subprocess.Popen([*CLI, "login", "--scope", SCOPE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:

            def read_stderr() -> None:
                assert proc.stderr is not None
                for line in proc.stderr:
                    shown.append(line)
                    match = re.search(r"(https://\S+).*?\b([A-Z0-9]{6,})\b", line)
                    if match:
                        device_login(match.group(1), match.group(2), SECOND, PASSWORD)

            reader = threading.Thread(target=read_stderr)
            reader.start()
            try:
                out = proc.stdout.read() if proc.stdout else ""
                proc.wait(60)
            finally:
                proc.kill()  # nothing once it has exited; else the pipes close after it
            reader.join(10)
        assert proc.returncode == 0, "".join(shown)
        assert f"signed in as {SECOND}" in out
        assert any("enter" in line.lower() or "code" in line.lower() for line in shown)

        listed = cli(env, "accounts").stdout
        assert USER in listed and SECOND in listed
        assert listed.splitlines()[0].startswith(f"* {SECOND}")  # the newest is the default

        second = cli(env, "token", "--scope", SCOPE, "--username", USER, "--output", "json")
        assert json.loads(second.stdout)["username"] == USER

        ambiguous = cli(env, "logout")
        assert ambiguous.returncode == 1 and "--username" in ambiguous.stderr
        assert cli(env, "logout", "--username", USER).returncode == 0
        remaining = cli(env, "accounts").stdout
        assert SECOND in remaining and USER not in remaining
        unknown = cli(env, "token", "--scope", SCOPE, "--username", USER)
        assert unknown.returncode == 1 and "not signed in" in unknown.stderr


def test_no_broker_gives_a_hint_and_no_stdout(dbus_session, tmp_path):
    env = dict(dbus_session.env, XDG_CONFIG_HOME=str(tmp_path))
    for args in (["accounts"], ["token", "--scope", SCOPE], ["logout"]):
        done = cli(env, *args, timeout=30)
        assert done.returncode == 1 and done.stdout == ""
        assert "install-service" in done.stderr
    no_bus = dict(env)
    no_bus.pop("DBUS_SESSION_BUS_ADDRESS")
    done = cli(no_bus, "token", "--scope", SCOPE, timeout=30)
    assert done.returncode == 1 and done.stdout == "" and "session bus" in done.stderr


def test_usage_errors():
    done = cli(dict(os.environ), "token")
    assert done.returncode == 2 and "--scope" in done.stderr


def test_install_service_dry_run_and_prefix(tmp_path):
    dry = cli(dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"),
                   XDG_CONFIG_HOME=str(tmp_path / "config")), "install-service", "--dry-run")
    assert dry.returncode == 0
    assert f"Exec={sys.executable} -m authbroker daemon" in dry.stdout
    assert str(tmp_path / "data" / "dbus-1" / "services" / install.DBUS_SERVICE_FILE) in dry.stdout
    assert str(tmp_path / "config" / "systemd" / "user" / install.SYSTEMD_UNIT) in dry.stdout
    assert not (tmp_path / "data").exists() and not (tmp_path / "config").exists()

    done = cli(dict(os.environ), "install-service", "--prefix", str(tmp_path / "pfx"))
    assert done.returncode == 0
    service = tmp_path / "pfx/share/dbus-1/services" / install.DBUS_SERVICE_FILE
    unit = tmp_path / "pfx/lib/systemd/user" / install.SYSTEMD_UNIT
    text = service.read_text()
    assert f"Name={broker1.BUS_NAME}\n" in text
    assert f"SystemdService={install.SYSTEMD_UNIT}\n" in text
    unit_text = unit.read_text()
    for line in ("Type=dbus", f"BusName={broker1.BUS_NAME}",
                 f"ExecStart={sys.executable} -m authbroker daemon"):
        assert line + "\n" in unit_text
    assert str(service) in done.stdout and str(unit) in done.stdout


def test_installed_service_file_activates_the_broker(dbus_session, tmp_path):
    """The file install-service writes, read by a real dbus-daemon, starts a working broker."""
    text = install.dbus_service_text(install.daemon_argv())
    (dbus_session.services_dir / install.DBUS_SERVICE_FILE).write_text(text)
    dbus_session.call_bus("ReloadConfig")
    dbus_session.update_activation_environment({"XDG_STATE_HOME": str(tmp_path / "state"),
                                                "XDG_CONFIG_HOME": str(tmp_path / "config")})
    started = time.monotonic()
    dbus_session.ping(broker1.BUS_NAME, broker1.OBJECT_PATH)
    assert time.monotonic() - started < 1.5
    pid = int(dbus_session.call_bus("GetConnectionUnixProcessID", broker1.BUS_NAME)[0])
    try:
        done = cli(dict(dbus_session.env), "accounts", timeout=30)
        assert done.returncode == 0 and "no accounts" in done.stderr
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"XDG_STATE_HOME={tmp_path / 'state'}".encode() in environ  # its store: ours
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while dbus_session.name_has_owner(broker1.BUS_NAME) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not dbus_session.name_has_owner(broker1.BUS_NAME)


def test_packaging_files_match_the_installer():
    argv = ["/usr/bin/authbroker", "daemon"]
    assert (REPO / "packaging" / install.DBUS_SERVICE_FILE).read_text() == \
        install.dbus_service_text(argv)
    assert (REPO / "packaging" / install.SYSTEMD_UNIT).read_text() == \
        install.systemd_unit_text(argv)


def test_systemd_quoting_of_odd_paths():
    text = install.systemd_unit_text(["/opt/my tools/py%thon$", "-m", "authbroker", "daemon"])
    assert 'ExecStart="/opt/my tools/py%%thon$$" -m authbroker daemon\n' in text


def test_ctrl_c_during_login_cancels_the_brokers_sign_in(dbus_session, authority, env, tmp_path):
    broker = DaemonProcess(dbus_session, dict(env, AUTHBROKER_UI="device-code"), tmp_path)
    log_path = broker.log
    try:
        broker.start()
        with subprocess.Popen([*CLI, "login", "--scope", SCOPE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as login:
            try:
                assert login.stderr is not None
                first = login.stderr.readline()  # the device-code prompt: the sign-in runs
                assert "code" in first.lower(), first
                login.send_signal(signal.SIGINT)
                out, _err = login.communicate(timeout=30)
            finally:
                login.kill()  # nothing once it has exited; else the pipes close after it
        assert login.returncode == 130 and out == ""
        deadline = time.monotonic() + 10
        # not just asked to cancel: the broker's sign-in really ended (answered USER_CANCELED)
        while not re.search(rb"acquireTokenInteractively correlation=\S+ status 7 ",
                            log_path.read_bytes()):
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(0.05)
    finally:
        broker.stop()
