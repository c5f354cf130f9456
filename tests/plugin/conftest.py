"""Shared pieces of the plugin tests: credential keywords for the local authority, token
claims, and the blob round trip of the seed's example."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import webbrowser
from pathlib import Path

import jwt
import pytest

from authbroker.ipc import BUS_NAME
from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker.aio import InteractiveBrowserBrokerCredential as AioCredential

STORAGE_SCOPE = "https://storage.azure.com/.default"
USERNAME = "user@contoso.example"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def cred_kwargs(authority) -> dict:
    """Keywords pointing a credential at the local authority (no instance discovery)."""
    return {
        "authority": authority.authority,
        "tenant_id": authority.tenant_id,
        "disable_instance_discovery": True,
        "timeout": 60,
    }


@pytest.fixture
def browser_backend(monkeypatch: pytest.MonkeyPatch, scripted_browser):
    """Force msal's loopback browser flow, signed in by the scripted user agent."""
    monkeypatch.setenv("AUTHBROKER_BACKEND", "browser")
    return scripted_browser


class Twin:
    """The sync or the aio credential behind one blocking interface, for one parametrized suite.

    The aio credential runs on one event loop for its whole life (its D-Bus connection is bound
    to the loop it was opened on), as it would in an application.
    """

    def __init__(self, flavour: str, **kwargs) -> None:
        self.flavour = flavour
        if flavour == "sync":
            self.credential = InteractiveBrowserBrokerCredential(**kwargs)
            self._loop = None
        else:
            self.credential = AioCredential(**kwargs)
            self._loop = asyncio.new_event_loop()

    def _run(self, value):
        return self._loop.run_until_complete(value) if self._loop else value

    def get_token(self, *scopes, **kwargs):
        return self._run(self.credential.get_token(*scopes, **kwargs))

    def get_token_info(self, *scopes, options=None):
        return self._run(self.credential.get_token_info(*scopes, options=options))

    def authenticate(self, **kwargs):
        return self._run(self.credential.authenticate(**kwargs))

    def close(self) -> None:
        self._run(self.credential.close())
        if self._loop:
            self._loop.close()


@pytest.fixture(params=["sync", "aio"])
def twin(request):
    """A factory of Twin credentials of one flavour; closes them after the test."""
    made: list[Twin] = []

    def make(**kwargs) -> Twin:
        made.append(Twin(request.param, **kwargs))
        return made[-1]

    yield make
    for credential in made:
        credential.close()


def sign_ins(browser) -> int:
    """How many times the scripted user agent signed somebody in."""
    return browser.log_text().count("signing in as")


class RunningDaemon:
    """``python -m authbroker daemon`` on a private bus, signing in with the scripted agent."""

    def __init__(self, bus, env: dict[str, str], tmp_path: Path) -> None:
        self.bus, self.env = bus, env
        self.ua_log = tmp_path / "useragent.log"
        self.log = tmp_path / "daemon.log"
        self.store = tmp_path / "store.enc"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "authbroker", "daemon", "--store", str(self.store)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env,
            )
        deadline = time.monotonic() + 20
        while not self.bus.name_has_owner(BUS_NAME):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the daemon did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        deadline = time.monotonic() + 5
        while self.bus.name_has_owner(BUS_NAME) and time.monotonic() < deadline:
            time.sleep(0.02)

    def sign_ins(self) -> int:
        text = self.ua_log.read_text() if self.ua_log.exists() else ""
        return text.count("signing in as")


def _daemon_env(authority, bus, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **bus.env}
    env.update(
        AUTHBROKER_AUTHORITY=authority.authority,
        AUTHBROKER_UI="browser",
        REQUESTS_CA_BUNDLE=authority.ca_bundle,
        CURL_CA_BUNDLE=authority.ca_bundle,
        BROWSER=f"{sys.executable} -m authbroker.useragent %s",
        AUTHBROKER_UA_LOG=str(tmp_path / "useragent.log"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    env.update(extra)
    env.pop("AUTHBROKER_BACKEND", None)
    return env


@pytest.fixture
def start_daemon(authority, dbus_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start our daemon on a private session bus (extra keywords go to its environment)."""
    monkeypatch.delenv("AUTHBROKER_BACKEND", raising=False)
    monkeypatch.setenv("BROWSER", "/bin/false %s")  # the plugin itself must never open one
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    started: list[RunningDaemon] = []

    def start(**env: str) -> RunningDaemon:
        daemon_env = _daemon_env(authority, dbus_session, tmp_path, **env)
        started.append(RunningDaemon(dbus_session, daemon_env, tmp_path))
        started[-1].start()
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def broker_daemon(start_daemon) -> RunningDaemon:
    """Our daemon owning com.microsoft.identity.broker1 on a private session bus."""
    return start_daemon()
