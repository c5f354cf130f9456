"""azure-identity's own credentials against the local authority, with instance discovery off."""

from __future__ import annotations

import threading
import time

import jwt

from authbroker.authority import DEMO_PASSWORD
from authbroker.devkit.useragent import device_login
from azure.identity import DeviceCodeCredential, InteractiveBrowserCredential

STORAGE_SCOPE = "https://storage.azure.com/.default"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _assert_storage_token(claims: dict, tenant_id: str, username: str) -> None:
    assert claims["aud"] == "https://storage.azure.com"
    assert claims["iss"] == f"https://sts.windows.net/{tenant_id}/"
    assert claims["tid"] == tenant_id
    assert claims["upn"] == username
    assert claims["nbf"] <= time.time() < claims["exp"]
    assert claims["exp"] - time.time() > 10 * 60  # Azurite has no clock skew


def test_interactive_browser_credential_with_scripted_browser(authority, scripted_browser):
    credential = InteractiveBrowserCredential(
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        timeout=30,
    )
    record = credential.authenticate(scopes=[STORAGE_SCOPE])
    assert (record.username, record.tenant_id) == ("user@contoso.example", authority.tenant_id)
    assert record.authority == authority.authority.removeprefix("https://")  # 127.0.0.1:PORT
    token = credential.get_token(STORAGE_SCOPE)
    _assert_storage_token(_claims(token.token), authority.tenant_id, "user@contoso.example")
    assert token.expires_on > time.time() + 600
    log = scripted_browser.log_text()
    assert "delivered the code" in log and DEMO_PASSWORD not in log


def test_interactive_browser_credential_signs_in_the_user_the_person_chose(
    authority, scripted_browser, monkeypatch
):
    monkeypatch.setenv("AUTHBROKER_UA_USERNAME", "second@contoso.example")
    credential = InteractiveBrowserCredential(
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        timeout=30,
    )
    token = credential.get_token(STORAGE_SCOPE)
    _assert_storage_token(_claims(token.token), authority.tenant_id, "second@contoso.example")


def test_device_code_credential_approved_on_the_device_page(authority):
    prompts: list[tuple[str, str]] = []
    approvals: list[str] = []

    def prompt(verification_uri: str, user_code: str, expires_on: object) -> None:
        prompts.append((verification_uri, user_code))
        approve = threading.Thread(
            target=lambda: approvals.append(
                device_login(verification_uri, user_code, "user@contoso.example", DEMO_PASSWORD)
            )
        )
        approve.start()

    credential = DeviceCodeCredential(
        authority=authority.authority,
        tenant_id=authority.tenant_id,
        disable_instance_discovery=True,
        prompt_callback=prompt,
        timeout=30,
    )
    token = credential.get_token(STORAGE_SCOPE)
    assert len(prompts) == 1 and prompts[0][0].startswith(authority.authority)
    assert approvals and "user@contoso.example" in approvals[0]
    _assert_storage_token(_claims(token.token), authority.tenant_id, "user@contoso.example")
    # A second call is answered from the cache: no second prompt.
    assert credential.get_token(STORAGE_SCOPE).token == token.token
    assert len(prompts) == 1
