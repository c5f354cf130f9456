"""Shared pieces of the plugin tests: credential keywords for the local authority, token
claims, and the blob round trip of the seed's example."""

from __future__ import annotations

import asyncio
import os
import webbrowser
from pathlib import Path

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker.aio import InteractiveBrowserBrokerCredential as AioCredential
from fixtures.daemon import DaemonProcess, daemon_env

STORAGE_SCOPE = "https://storage.azure.com/.default"
USERNAME = "user@contoso.example"
#: A Signed HTTP Request PoP request (PopTokenRequestOptions' ``pop``).
POP = {
    "resource_request_method": "GET",
    "resource_request_url": "https://127.0.0.1:10000/devstoreaccount1/c",
    "nonce": "n-1",
}


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
    return browser.sign_ins()


class RunningDaemon(DaemonProcess):
    """Our daemon, signing in with the scripted user agent (``sign_ins()`` counts them)."""


@pytest.fixture
def start_daemon(authority, dbus_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 started_daemons: list[DaemonProcess]):
    """Start our daemon on a private session bus (extra keywords go to its environment)."""
    monkeypatch.delenv("AUTHBROKER_BACKEND", raising=False)
    monkeypatch.setenv("BROWSER", "/bin/false %s")  # the plugin itself must never open one
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    def start(**extra: str) -> RunningDaemon:
        env = daemon_env(authority, dbus_session, tmp_path,
                         **{"AUTHBROKER_UI": "browser", **extra})
        env = {**os.environ, **env}  # the test's own variables reach the daemon too
        env.pop("AUTHBROKER_BACKEND", None)
        daemon = RunningDaemon(dbus_session, env, tmp_path, store=tmp_path / "store.enc")
        started_daemons.append(daemon)
        daemon.start()
        return daemon

    return start


@pytest.fixture
def broker_daemon(start_daemon) -> RunningDaemon:
    """Our daemon owning com.microsoft.identity.broker1 on a private session bus."""
    return start_daemon()


def two_tenants(credential) -> None:
    """An additionally allowed tenant is served for the same account; another one is refused."""
    credential.get_token(STORAGE_SCOPE)
    other = credential.get_token(STORAGE_SCOPE, tenant_id="contoso.example")
    assert claims_of(other.token)["upn"] == USERNAME
    with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants"):
        credential.get_token(STORAGE_SCOPE, tenant_id="fabrikam.example")
