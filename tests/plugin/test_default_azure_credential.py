"""azure-identity's own DefaultAzureCredential loading OUR InteractiveBrowserBrokerCredential
(its BrokerCredential imports azure.identity.broker and runs it with the default account, no UI).
DAC only does that on Windows and WSL; we let it believe it is on WSL, where our dbus backend is
exactly what a user would get."""

from __future__ import annotations

import azure.identity._credentials.broker as dac_broker
import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure.identity import DefaultAzureCredential
from azure.identity.broker import InteractiveBrowserBrokerCredential
from plugin.conftest import STORAGE_SCOPE, USERNAME, claims_of

EXCLUDE_OTHERS = {
    f"exclude_{name}_credential": True
    for name in (
        "environment", "workload_identity", "managed_identity", "shared_token_cache",
        "visual_studio_code", "cli", "powershell", "developer_cli",
    )
}


@pytest.fixture
def dac(authority, broker_daemon, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dac_broker, "is_wsl", lambda: True)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority.authority)  # DAC keeps `authority`
    credential = DefaultAzureCredential(
        broker_tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        **EXCLUDE_OTHERS,
    )
    broker = credential.credentials[-1]
    assert isinstance(broker._broker_credential, InteractiveBrowserBrokerCredential)
    yield credential
    credential.close()  # our credential inside keeps a connection to the bus open


def test_dac_uses_the_broker_default_account(dac, cred_kwargs, broker_daemon) -> None:
    with InteractiveBrowserBrokerCredential(**cred_kwargs) as first:
        first.get_token(STORAGE_SCOPE)  # one sign-in
    token = dac.get_token(STORAGE_SCOPE)
    assert claims_of(token.token)["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1


def test_dac_without_an_account_is_unavailable_without_ui(dac, broker_daemon) -> None:
    with pytest.raises(ClientAuthenticationError) as info:
        dac.get_token(STORAGE_SCOPE)
    assert "disable_interactive_fallback" in str(info.value)
    assert broker_daemon.sign_ins() == 0
