"""Real msal PublicClientApplication against the real authority (subprocess, TLS)."""

from __future__ import annotations

import jwt
import pytest
import requests

from authbroker.authority import DEMO_PASSWORD, DEMO_TENANT_ID
from fixtures.authority import browser_sign_in, msal_app, parse_page

STORAGE = "https://storage.azure.com/.default"


@pytest.fixture
def app(authority):
    return msal_app(authority.authority, authority.tenant_id)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_auth_code_flow_form_post_gives_tokens_and_account(authority, app):
    result = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["refresh_token"]
    idt = result["id_token_claims"]
    assert idt["preferred_username"] == "user@contoso.example"
    assert idt["tid"] == DEMO_TENANT_ID == authority.tenant_id
    assert idt["iss"] == f"{authority.authority}/{DEMO_TENANT_ID}/v2.0"
    assert idt["aud"] == app.client_id
    [account] = app.get_accounts()
    assert account["username"] == "user@contoso.example"
    assert account["home_account_id"] == f"{idt['oid']}.{DEMO_TENANT_ID}"
    assert account["environment"] == "127.0.0.1"


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_auth_code_flow_query_mode_redirects(app):
    result = browser_sign_in(app, ["api://my-api/read"], username="second@contoso.example")
    assert "access_token" in result, result
    at = _claims(result["access_token"])
    assert at["ver"] == "2.0" and at["aud"] == "api://my-api" and at["scp"] == "read"
    assert at["preferred_username"] == "second@contoso.example"


def test_device_flow_approved_in_devicelogin_page(authority, app):
    flow = app.initiate_device_flow(scopes=[STORAGE])
    assert flow["interval"] == 1
    assert flow["user_code"] in flow["message"]
    assert flow["verification_uri"] == authority.url("/devicelogin")
    browser = requests.Session()
    page = browser.get(flow["verification_uri"], timeout=10)
    [form] = parse_page(page.text)[0]
    assert {"user_code", "username", "password"} <= set(form.fields)
    done = browser.post(flow["verification_uri"], data={
        "user_code": flow["user_code"], "username": "user@contoso.example",
        "password": DEMO_PASSWORD,
    }, timeout=10)
    assert done.status_code == 200 and "signed in" in done.text
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "user@contoso.example"
    assert _claims(result["access_token"])["aud"] == "https://storage.azure.com"
    # The token is cached under the echoed .default scope: a silent call needs no network.
    [account] = app.get_accounts()
    again = app.acquire_token_silent([STORAGE], account=account)
    assert again["access_token"] == result["access_token"]
