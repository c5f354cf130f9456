"""Every bad request gets an Entra-style error (never a 500), over real HTTPS."""

from __future__ import annotations

import json
import re

import pytest
import requests

from authbroker.authority import DEMO_PASSWORD
from fixtures.authority import (
    TEST_CLIENT_ID,
    TEST_REDIRECT,
    msal_app,
    parse_page,
    result_fields,
    sign_in,
    start_authority,
)

STORAGE = "https://storage.azure.com/.default"
SCOPE = f"{STORAGE} offline_access openid profile"


def assert_entra_error(response: requests.Response, error: str, code: int, status: int = 400):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]
    return body


def token_url(authority, tenant: str | None = None) -> str:
    return authority.url(f"/{tenant or authority.tenant_id}/oauth2/v2.0/token")


def fresh_code(authority, **flow_kwargs) -> tuple[dict, str]:
    """An unredeemed authorization code and msal's flow (which holds the PKCE verifier)."""
    app = msal_app(authority.authority, authority.tenant_id)
    flow_kwargs.setdefault("response_mode", "form_post")
    flow = app.initiate_auth_code_flow([STORAGE], redirect_uri=TEST_REDIRECT, **flow_kwargs)
    fields = sign_in(requests.Session(), flow["auth_uri"], "user@contoso.example", DEMO_PASSWORD)
    return flow, fields["code"]


def redeem(authority, code: str, verifier: str | None, **extra) -> requests.Response:
    data = {"grant_type": "authorization_code", "client_id": TEST_CLIENT_ID, "code": code,
            "redirect_uri": TEST_REDIRECT, "scope": SCOPE, **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return requests.post(token_url(authority), data=data, timeout=10)


def test_pkce_mismatch_and_missing_verifier(authority):
    flow, code = fresh_code(authority)
    assert_entra_error(redeem(authority, code, "x" * 43), "invalid_grant", 50148)
    flow, code = fresh_code(authority)
    assert_entra_error(redeem(authority, code, None), "invalid_request", 501481)


def test_code_is_single_use_and_redirect_uri_must_match(authority):
    flow, code = fresh_code(authority)
    first = redeem(authority, code, flow["code_verifier"])
    assert first.status_code == 200
    assert_entra_error(redeem(authority, code, flow["code_verifier"]), "invalid_grant", 54005)
    # a replayed code revokes what the first redemption issued
    replay_victim = requests.post(token_url(authority), data={
        "grant_type": "refresh_token", "client_id": TEST_CLIENT_ID,
        "refresh_token": first.json()["refresh_token"]}, timeout=10)
    assert_entra_error(replay_victim, "invalid_grant", 50173)
    flow, code = fresh_code(authority)
    body = assert_entra_error(
        redeem(authority, code, flow["code_verifier"], redirect_uri="http://localhost:9999"),
        "invalid_grant", 50011,
    )
    assert "http://localhost:9999" in body["error_description"]


def test_expired_code_is_rejected(tmp_path, authority):
    import time

    with start_authority(tmp_path, "--code-lifetime", "1", ca_from=authority) as short:
        flow, code = fresh_code(short)
        time.sleep(1.2)
        assert_entra_error(redeem(short, code, flow["code_verifier"]), "invalid_grant", 70008)
    assert_entra_error(redeem(authority, "made-up-code", "x" * 43), "invalid_grant", 70000)


def test_unknown_grant_and_malformed_bodies(authority):
    url = token_url(authority)
    assert_entra_error(
        requests.post(url, data={"grant_type": "password", "client_id": TEST_CLIENT_ID},
                      timeout=10),
        "unsupported_grant_type", 70003,
    )
    assert_entra_error(requests.post(url, json={"grant_type": "refresh_token"}, timeout=10),
                       "invalid_request", 90014)
    assert_entra_error(requests.post(url, data=b"\xff\xfe=\x00%zz", timeout=10,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}),
                       "invalid_request", 90014)
    assert_entra_error(requests.post(url, data={"client_id": TEST_CLIENT_ID}, timeout=10),
                       "invalid_request", 900144)
    assert_entra_error(requests.post(url, data={"grant_type": "refresh_token"}, timeout=10),
                       "invalid_request", 900144)
    assert_entra_error(
        requests.post(url, data={"grant_type": "refresh_token", "client_id": TEST_CLIENT_ID,
                                 "refresh_token": "x", "claims": "{not json"}, timeout=10),
        "invalid_request", 90100,
    )
    assert_entra_error(
        requests.post(url, data={"grant_type": "refresh_token", "client_id": TEST_CLIENT_ID,
                                 "refresh_token": "x", "client_secret": "s"}, timeout=10),
        "invalid_client", 7000215, status=401,
    )
    big = requests.post(url, data={"grant_type": "x" * 400_000}, timeout=10)
    assert big.status_code == 413  # aiohttp's body limit, not a crash


def test_scopes_for_two_resources_are_invalid_scope(authority):
    answer = requests.post(authority.url(f"/{authority.tenant_id}/oauth2/v2.0/devicecode"), data={
        "client_id": TEST_CLIENT_ID, "scope": f"{STORAGE} api://orders/read openid"}, timeout=10)
    assert_entra_error(answer, "invalid_scope", 28000)


def test_unknown_tenant(authority):
    conf = requests.get(authority.url("/fabrikam.example/v2.0/.well-known/openid-configuration"),
                        timeout=10)
    assert_entra_error(conf, "invalid_tenant", 90002)
    assert_entra_error(
        requests.post(token_url(authority, "nope"), data={"grant_type": "refresh_token"},
                      timeout=10),
        "invalid_tenant", 90002,
    )
    page = requests.get(authority.url("/nope/oauth2/v2.0/authorize"), timeout=10)
    assert page.status_code == 400 and "AADSTS90002" in page.text


def _authorize(authority, **params) -> requests.Response:
    query = {"client_id": TEST_CLIENT_ID, "response_type": "code", "redirect_uri": TEST_REDIRECT,
             "scope": SCOPE, "state": "st8", "code_challenge": "c" * 43,
             "code_challenge_method": "S256", **params}
    query = {k: v for k, v in query.items() if v is not None}
    return requests.get(authority.url(f"/{authority.tenant_id}/oauth2/v2.0/authorize"),
                        params=query, allow_redirects=False, timeout=10)


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example/callback", "http://localhost.evil.example:8400/",
    "ms-appx-web://Microsoft.AAD.BrokerPlugin/some-other-client",
])
def test_bad_redirect_uri_shows_aadsts50011_page_not_a_redirect(authority, redirect_uri):
    page = _authorize(authority, redirect_uri=redirect_uri)
    assert page.status_code == 400
    assert "AADSTS50011" in page.text and redirect_uri in page.text
    assert not parse_page(page.text)[0]  # no form posting anything anywhere


@pytest.mark.parametrize("redirect_uri", [
    "http://localhost:1234", "http://127.0.0.1:50123/cb", "http://[::1]:8080/",
    "https://login.microsoftonline.com/common/oauth2/nativeclient",
    f"ms-appx-web://Microsoft.AAD.BrokerPlugin/{TEST_CLIENT_ID}",
])
def test_allowed_redirect_uris_get_the_sign_in_form(authority, redirect_uri):
    page = _authorize(authority, redirect_uri=redirect_uri)
    assert page.status_code == 200
    [form] = parse_page(page.text)[0]
    assert form.method == "POST" and {"username", "password"} <= set(form.fields)


def test_clients_file_registers_redirect_uris(tmp_path, authority):
    clients = tmp_path / "clients.json"
    clients.write_text(json.dumps({"allow_unregistered": False, "clients": [
        {"client_id": TEST_CLIENT_ID, "redirect_uris": ["https://app.example/signin"]}]}))
    with start_authority(tmp_path, "--clients", str(clients), ca_from=authority) as own:
        assert _authorize(own, redirect_uri="https://app.example/signin").status_code == 200
        assert _authorize(own, client_id="someone-else").status_code == 400
        assert_entra_error(
            requests.post(token_url(own), data={"grant_type": "refresh_token",
                                                "client_id": "someone-else",
                                                "refresh_token": "x"}, timeout=10),
            "invalid_client", 700016, status=401,
        )


def test_authorize_errors_go_back_to_the_app(authority):
    no_pkce = result_fields(_authorize(authority, code_challenge=None))
    assert no_pkce["error"] == "invalid_request" and no_pkce["state"] == "st8"
    assert no_pkce["error_description"].startswith("AADSTS9002325:")
    token_type = result_fields(_authorize(authority, response_type="token"))
    assert token_type["error"] == "unsupported_response_type"
    silent = result_fields(_authorize(authority, prompt="none", response_mode="form_post"))
    assert silent["error"] == "interaction_required" and silent["state"] == "st8"
    assert silent["__action__"] == TEST_REDIRECT


def test_wrong_password_reshows_the_form_with_an_error(authority):
    session = requests.Session()
    page = _authorize(authority)
    [form] = parse_page(page.text)[0]
    again = session.post(page.url.split("?")[0], data={
        **form.fields, "username": "user@contoso.example", "password": "wrong"}, timeout=10)
    assert again.status_code == 200
    assert "password is incorrect" in again.text
    [form2] = parse_page(again.text)[0]
    assert form2.fields["username"] == "user@contoso.example"
    done = session.post(page.url.split("?")[0], data={
        **form2.fields, "password": DEMO_PASSWORD}, allow_redirects=False, timeout=10)
    assert "code" in result_fields(done)


def test_device_login_errors_reshow_the_form(authority):
    url = authority.url("/devicelogin")
    bad_code = requests.post(url, data={"user_code": "NOPE", "username": "user@contoso.example",
                                        "password": DEMO_PASSWORD}, timeout=10)
    assert bad_code.status_code == 200 and "not valid" in bad_code.text
    app = msal_app(authority.authority, authority.tenant_id)
    flow = app.initiate_device_flow(scopes=[STORAGE])
    bad_pw = requests.post(url, data={"user_code": flow["user_code"],
                                      "username": "user@contoso.example", "password": "nope"},
                           timeout=10)
    assert bad_pw.status_code == 200 and "password is incorrect" in bad_pw.text
    pending = requests.post(token_url(authority), data={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": TEST_CLIENT_ID,
        "device_code": flow["device_code"], "code": flow["device_code"]}, timeout=10)
    assert_entra_error(pending, "authorization_pending", 70016)
    empty = requests.post(url, data=b"", timeout=10)
    assert empty.status_code == 200


def test_logs_hold_no_codes_tokens_or_passwords(authority):
    flow, code = fresh_code(authority)
    tokens = redeem(authority, code, flow["code_verifier"]).json()
    log = (authority.data_dir.parent / "authority.log").read_text()
    assert re.search(r"POST /[^ ]+/oauth2/v2.0/token 200", log)
    for secret in (code, tokens["access_token"], tokens["refresh_token"], DEMO_PASSWORD,
                   flow["state"], "code_challenge"):
        assert secret not in log
    assert "Traceback" not in log
