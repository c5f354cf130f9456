"""No broker and no browser: the credential does what azure-identity's
InteractiveBrowserCredential does — its configured pipeline (``policies``, ``transport``) carries
the authority requests, then it fails with the same error type, before any browser is tried."""

from __future__ import annotations

import webbrowser

import pytest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport

from azure.identity import CredentialUnavailableError, InteractiveBrowserCredential
from plugin.conftest import STORAGE_SCOPE


class RecordingTransport(RequestsTransport):
    """A real HTTP transport that remembers each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        self.sent.append((request.method, request.url))
        return super().send(request, **kwargs)


class RecordingPolicy(SansIOHTTPPolicy):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_request(self, request) -> None:  # type: ignore[no-untyped-def]
        self.seen.append(request.http_request.url)


@pytest.fixture
def nothing(monkeypatch: pytest.MonkeyPatch, dbus_session) -> None:
    """A session bus where nothing owns the broker's name, and no browser at all."""
    monkeypatch.delenv("AUTHBROKER_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    monkeypatch.delenv("BROWSER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    monkeypatch.setenv("PATH", "/nonexistent")  # no xdg-open, no chromium, no firefox
    monkeypatch.setattr(webbrowser, "open", _never_opened)


def _never_opened(url: str, *args: object, **kwargs: object) -> bool:
    raise AssertionError(f"a browser was asked to open {url}")


def _attempt(make, cred_kwargs: dict):  # type: ignore[no-untyped-def]
    transport, policy = RecordingTransport(), RecordingPolicy()
    credential = make(transport=transport, policies=[policy], **cred_kwargs)
    with pytest.raises(Exception) as info:
        credential.get_token(STORAGE_SCOPE)
    return transport.sent, policy.seen, info.value


def test_same_requests_through_the_pipeline_and_same_error_as_azure_identity(
    twin, cred_kwargs, nothing, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = cred_kwargs
    # azure-identity's own credential asks webbrowser.open, which finds no browser
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: False)
    theirs = _attempt(InteractiveBrowserCredential, kwargs)
    monkeypatch.setattr(webbrowser, "open", _never_opened)
    ours = _attempt(twin, kwargs)

    assert ours[0] == theirs[0] and ours[0], (ours[0], theirs[0])  # the transport's requests
    assert ours[1] == theirs[1] == [url for _, url in theirs[0]]  # each through the policies
    assert type(ours[2]) is type(theirs[2])
    # the authority answered its metadata request: it is the missing browser that stops both
    assert ours[0] == [("GET", f"{cred_kwargs['authority']}/{cred_kwargs['tenant_id']}"
                               "/v2.0/.well-known/openid-configuration")]
    assert isinstance(ours[2], CredentialUnavailableError)
    assert "set $BROWSER" in str(ours[2]) and "install-service" in str(ours[2])
