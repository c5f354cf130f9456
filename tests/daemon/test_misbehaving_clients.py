"""Clients that misbehave, against the real daemon process on a private bus and the real local
authority: a caller that dies during its sign-in (the daemon cancels it at once, closing its
loopback listener or withdrawing its device code), a caller that shows no device-code prompt
(``authbroker status`` shows it), mTLS PoP requests (a clear error, never a bearer token)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import BrokerClient
from authbroker.devkit.useragent import device_login
from authbroker.errors import BrokerStatusError
from fixtures.daemon import DaemonProcess, daemon_env

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
SCOPE = "https://storage.azure.com/.default"
USER = DEMO_USERS[0]
#: A third-party Broker1 caller: interactive sign-in, prompts shown to nobody.
CALLER = """
import sys
from authbroker import broker1
from authbroker.client import BrokerClient
auth = broker1.AuthParameters(client_id=sys.argv[1], requested_scopes=(sys.argv[2],),
                              authority=sys.argv[3], is_sign_in=True)
with BrokerClient(timeout=120) as client:
    result = client.acquire_token_interactively(auth, on_device_code=None,
                                                correlation_id=sys.argv[4])
print(result.account.username if result.account else "?")
"""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def status_json(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "authbroker", "status", "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Setup:
    def __init__(self, daemon: DaemonProcess, env: dict[str, str], tmp_path: Path) -> None:
        self.daemon, self.env, self.tmp_path = daemon, env, tmp_path
        self.callers: list[subprocess.Popen[str]] = []

    def caller(self, cid: str, *, client_id: str = CLIENT_ID,
               authority: str = "https://127.0.0.1/organizations") -> subprocess.Popen[str]:
        self.callers.append(subprocess.Popen(
            [sys.executable, "-c", CALLER, client_id, SCOPE, authority, cid],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        return self.callers[-1]

    def close(self) -> None:
        """End the callers still running and close their pipes."""
        for proc in self.callers:
            proc.kill()  # nothing once it has exited
            with proc:  # closes its pipes, reaps it
                pass

    def cancelled_in_log(self, cid: str) -> bool:
        return f"sign-in {cid} cancelled" in self.daemon.log_text()


@pytest.fixture
def start(dbus_session, authority, tmp_path: Path,
          started_daemons) -> Iterator[Callable[..., Setup]]:
    setups: list[Setup] = []

    def started(**extra: str | None) -> Setup:
        env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                         AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD, **extra)
        daemon = DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc")
        started_daemons.append(daemon)
        daemon.start()
        setups.append(Setup(daemon, env, tmp_path))
        return setups[-1]
    yield started
    for setup in setups:
        setup.close()


@pytest.fixture
def recording_browser(tmp_path: Path) -> Iterator[Path]:
    """A $BROWSER that only writes down the URL it was given (nobody signs in)."""
    urls, script = tmp_path / "urls.txt", tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {urls}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    yield script


def test_a_caller_that_dies_has_its_browser_sign_in_cancelled_at_once(start, recording_browser):
    setup = start(AUTHBROKER_UI="browser", BROWSER=f"{recording_browser} %s")
    cid = str(uuid.uuid4())
    caller = setup.caller(cid)
    urls = setup.tmp_path / "urls.txt"
    url = wait_for("the browser to be opened",
                   lambda: urls.exists() and urls.read_text().strip())
    port = int(re.search(r"redirect_uri=http%3A%2F%2Flocalhost%3A(\d+)", url).group(1))
    assert port_open(port)  # the loopback listener waits for the answer
    os.kill(caller.pid, signal.SIGKILL)
    killed = time.monotonic()
    caller.wait(5)
    wait_for("the sign-in to be cancelled", lambda: setup.cancelled_in_log(cid), timeout=5)
    assert time.monotonic() - killed < 2.5, setup.daemon.log_tail()
    assert not port_open(port)
    assert "left the bus" in setup.daemon.log_text()
    assert setup.daemon.running()
    assert status_json(setup.env)["signIns"] == []


def test_a_device_code_nobody_is_shown_is_listed_by_status_until_the_caller_dies(start):
    setup = start(AUTHBROKER_UI="device-code", BROWSER="")
    cid = str(uuid.uuid4())
    caller = setup.caller(cid)
    pending = wait_for("the sign-in to be listed", lambda: status_json(setup.env)["signIns"])
    [sign_in] = pending
    assert sign_in["correlationId"] == cid and sign_in["clientId"] == CLIENT_ID
    assert sign_in["caller"]["pid"] == caller.pid and sign_in["caller"]["busName"]
    code = sign_in["deviceCode"] or wait_for(
        "the device code", lambda: status_json(setup.env)["signIns"][0]["deviceCode"])
    assert code["userCode"] in setup.daemon.log_text()  # the same code the log shows
    assert code["verificationUri"].startswith("https://127.0.0.1:")
    os.kill(caller.pid, signal.SIGKILL)
    killed = time.monotonic()
    caller.wait(5)
    wait_for("the sign-in to be cancelled", lambda: setup.cancelled_in_log(cid), timeout=5)
    assert time.monotonic() - killed < 2.5
    assert status_json(setup.env)["signIns"] == []  # the code is withdrawn


def test_status_shows_the_code_a_person_then_enters(start):
    setup = start(AUTHBROKER_UI="device-code", BROWSER="")
    cid = str(uuid.uuid4())
    caller = setup.caller(cid)
    code = wait_for("the device code", lambda: next(
        (s["deviceCode"] for s in status_json(setup.env)["signIns"] if s["deviceCode"]), None))
    table = subprocess.run([sys.executable, "-m", "authbroker", "status"], env=setup.env,
                           capture_output=True, text=True, timeout=30).stdout
    assert code["userCode"] in table and code["verificationUri"] in table
    device_login(code["verificationUri"], code["userCode"], USER, DEMO_PASSWORD)
    out, err = caller.communicate(timeout=60)
    assert caller.returncode == 0, err
    assert out.strip() == USER
    after = status_json(setup.env)
    assert after["signIns"] == []
    assert [(a["username"], a["default"]) for a in after["accounts"]] == [(USER, True)]
    [recent] = [c for c in after["recentCallers"] if c["pid"] == caller.pid]  # the caller
    assert recent["clientIds"] == [CLIENT_ID]
    assert recent["lastMethod"] == "acquireTokenInteractively"
    assert Path(recent["executable"]).name.startswith("python")
    assert recent["busName"] and recent["calls"] == 1
    table = subprocess.run([sys.executable, "-m", "authbroker", "status"], env=setup.env,
                           capture_output=True, text=True, timeout=30).stdout
    assert f"* {USER}" in table and "sign-ins waiting: none" in table


def test_mtls_pop_requests_get_a_clear_error_never_a_bearer_token(start):
    setup = start(AUTHBROKER_UI="browser")
    pop = broker1.PopParams(http_method="GET", uri_host="storage.example", uri_path="/c",
                            nonce="n0nce", authentication_scheme="mtls_pop")
    auth = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(SCOPE,),
                                  authority="https://127.0.0.1/organizations", pop_params=pop)
    with BrokerClient(timeout=30) as client:
        for call in (client.acquire_token_interactively, client.acquire_token_silently):
            with pytest.raises(BrokerStatusError) as err:
                call(auth)
            assert err.value.status == broker1.Status.UNEXPECTED  # not 2: no sign-in follows
            assert "Proof-of-Possession" in err.value.context
    assert setup.daemon.sign_ins() == 0  # refused before any browser opened
