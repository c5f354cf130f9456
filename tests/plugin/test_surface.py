"""The public surface: names, base classes, keywords, lazy imports — what a user's code touches
before any sign-in. No server is needed; none of these may do I/O."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from azure.core.credentials import TokenRequestOptions
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

import azure.identity.broker as broker
import azure.identity.broker.aio as broker_aio
from authbroker.plugin.backends.base import BackendError, Kind
from authbroker.plugin.translate import translate
from azure.identity import (
    AuthenticationRecord,
    CredentialUnavailableError,
    InteractiveBrowserCredential,
)
from azure.identity.broker._compat import within_dac

CLOSED = "https://127.0.0.1:9"  # nothing listens there: any I/O would fail loudly


def test_public_names_are_pinned() -> None:
    assert broker.__all__ == ["InteractiveBrowserBrokerCredential", "PopTokenRequestOptions"]
    assert broker_aio.__all__ == ["InteractiveBrowserBrokerCredential"]
    for module in (broker, broker_aio):
        for name in module.__all__:
            assert getattr(module, name).__module__.startswith("azure.identity.broker")


def test_sync_credential_is_an_interactive_browser_credential() -> None:
    assert issubclass(broker.InteractiveBrowserBrokerCredential, InteractiveBrowserCredential)


def test_pop_options_extend_token_request_options() -> None:
    keys = broker.PopTokenRequestOptions.__annotations__
    assert "pop" in keys
    assert set(TokenRequestOptions.__annotations__) <= set(keys)


def test_aio_credential_has_the_async_token_credential_shape() -> None:
    cls = broker_aio.InteractiveBrowserBrokerCredential
    credential = cls(authority=CLOSED)
    assert isinstance(credential, AsyncTokenCredential)
    assert isinstance(credential, AsyncSupportsTokenInfo)
    for name in ("get_token", "get_token_info", "close", "authenticate", "__aenter__", "__aexit__"):
        assert inspect.iscoroutinefunction(getattr(cls, name)), name


ALL_KEYWORDS = {
    "authority": CLOSED,
    "tenant_id": "8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
    "client_id": "11111111-2222-3333-4444-555555555555",
    "login_hint": "user@contoso.example",
    "redirect_uri": "http://localhost:8765",
    "timeout": 30,
    "disable_automatic_authentication": True,
    "disable_instance_discovery": True,
    "additionally_allowed_tenants": ["*"],
    "enable_support_logging": False,
    "parent_window_handle": 0x2A00007,
    "enable_msa_passthrough": True,
    "use_default_broker_account": True,
    "disable_interactive_fallback": True,
}


@pytest.mark.parametrize("module", [broker, broker_aio], ids=["sync", "aio"])
def test_every_keyword_is_accepted_without_io(module, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "no-such-backend")  # read lazily, not here
    credential = module.InteractiveBrowserBrokerCredential(**ALL_KEYWORDS)
    options = credential._plugin.options
    assert options.parent_window_handle == 0x2A00007
    assert options.use_default_broker_account and options.disable_interactive_fallback
    assert options.redirect_port == 8765
    assert options.client_id == ALL_KEYWORDS["client_id"]


def test_authentication_record_sets_client_tenant_and_account() -> None:
    record = AuthenticationRecord(
        "tenant-a", "client-b", "127.0.0.1:9", "uid.tenant-a", "user@contoso.example"
    )
    credential = broker.InteractiveBrowserBrokerCredential(
        authentication_record=record, disable_instance_discovery=True
    )
    options = credential._plugin.options
    assert (options.client_id, options.tenant_id) == ("client-b", "tenant-a")
    assert credential._plugin.account.home_account_id == "uid.tenant-a"


def test_mixed_install_with_microsofts_package_is_reported(tmp_path: Path) -> None:
    """pip unpacking Microsoft's azure-identity-broker over ours leaves its modules beside ours."""
    assert broker._foreign_modules(Path(broker.__file__).parent) == []
    (tmp_path / "_browser.py").write_text("# Microsoft's module\n")
    (tmp_path / "_credential.py").write_text("# ours\n")
    assert broker._foreign_modules(tmp_path) == ["_browser.py"]


def test_import_is_lazy() -> None:
    """Importing the package must not load any backend, D-Bus, pymsalruntime or JWT code."""
    code = (
        "import sys, azure.identity.broker, azure.identity.broker.aio\n"
        "heavy = ('authbroker.plugin.backends.dbus', 'authbroker.plugin.backends.native', "
        "'authbroker.plugin.backends.browser', 'authbroker.client', 'jeepney', 'pymsalruntime', "
        "'msal.broker', 'jwt')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"authority": "https://contoso.b2clogin.com"},
        {"authority": "contoso.b2clogin.com", "tenant_id": "contoso.onmicrosoft.com"},
    ],
)
def test_b2c_is_refused_clearly(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="B2C.*not supported"):
        broker.InteractiveBrowserBrokerCredential(**kwargs)


def test_unlisted_tenant_is_refused_before_any_io() -> None:
    credential = broker.InteractiveBrowserBrokerCredential(
        authority=CLOSED, tenant_id="tenant-a", additionally_allowed_tenants=["tenant-b"]
    )
    with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants") as info:
        credential.get_token("scope/.default", tenant_id="tenant-c")
    assert not isinstance(info.value, CredentialUnavailableError)


def test_inside_default_azure_credential_failures_are_unavailable() -> None:
    credential = broker.InteractiveBrowserBrokerCredential(authority=CLOSED, tenant_id="tenant-a")
    token = within_dac.set(True)
    try:
        with pytest.raises(CredentialUnavailableError, match="tenant-c"):
            credential.get_token("scope/.default", tenant_id="tenant-c")
    finally:
        within_dac.reset(token)


def test_mtls_pop_is_refused_not_downgraded() -> None:
    credential = broker.InteractiveBrowserBrokerCredential(authority=CLOSED, tenant_id="tenant-a")
    with pytest.raises(ClientAuthenticationError, match="Proof-of-Possession"):
        credential.get_token_info("scope/.default", options={"pop": True})  # type: ignore[typeddict-item]


def test_redirect_uri_error_names_every_platform_uri() -> None:
    error = translate(
        BackendError(Kind.FAILED, "AADSTS50011: The redirect URI 'x' does not match"),
        None,
        client_id="cid-1",
        in_dac=False,
    )
    assert isinstance(error, ClientAuthenticationError)
    message = str(error)
    assert "ms-appx-web://Microsoft.AAD.BrokerPlugin/cid-1" in message
    assert "https://login.microsoftonline.com/common/oauth2/nativeclient" in message
    assert "http://localhost" in message
