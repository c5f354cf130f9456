"""Shared pieces of the plugin tests: credential keywords for the local authority, token
claims, and the blob round trip of the seed's example."""

from __future__ import annotations

import asyncio

import jwt
import pytest

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
