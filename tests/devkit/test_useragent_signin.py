"""The scripted user agent against the real authority, with msal as the app."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jwt
import msal
import pytest
import requests

from authbroker.authority import DEMO_PASSWORD
from authbroker.devkit.useragent import SignInError, device_login, sign_in

USER = "user@contoso.example"
SECOND = "second@contoso.example"
SCOPES = ["https://storage.azure.com/.default"]


def _app(authority) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        "11111111-2222-3333-4444-555555555555",
        authority=f"{authority.authority}/{authority.tenant_id}",
        instance_discovery=False,
    )


def _username(result: dict) -> str:
    assert "access_token" in result, result.get("error_description")
    return result["id_token_claims"]["preferred_username"]


def test_form_post_answer_reaches_the_loopback_and_redeems(authority, loopback):
    app = _app(authority)
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post"
    )
    delivery = sign_in(flow["auth_uri"], USER, DEMO_PASSWORD)
    arrival = loopback.wait()
    assert (delivery.method, delivery.status, arrival.method) == ("POST", 200, "POST")
    assert arrival.fields["state"] == flow["state"] and arrival.fields["code"]
    result = app.acquire_token_by_auth_code_flow(flow, arrival.fields, scopes=SCOPES)
    assert _username(result) == USER


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
def test_query_mode_follows_the_redirect(authority, loopback):
    app = _app(authority)
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=loopback.redirect_uri)
    delivery = sign_in(flow["auth_uri"], SECOND, DEMO_PASSWORD)
    arrival = loopback.wait()
    assert (delivery.method, arrival.method) == ("GET", "GET")
    assert arrival.fields["code"] == delivery.fields["code"]
    assert _username(app.acquire_token_by_auth_code_flow(flow, arrival.fields)) == SECOND


def test_wrong_password_is_an_error_naming_the_problem_not_the_password(authority, loopback):
    flow = _app(authority).initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post"
    )
    with pytest.raises(SignInError) as caught:
        sign_in(flow["auth_uri"], USER, "not-the-Passw0rd")
    message = str(caught.value)
    assert "not-the-Passw0rd" not in message
    assert "password" in message.lower() or "AADSTS" in message
    assert loopback.arrivals.empty()  # nothing was delivered to the app


def test_account_picker_picks_the_named_account_without_a_password(authority, loopback):
    app, session = _app(authority), requests.Session()
    session.verify = authority.ca_bundle

    def signed_in(username: str, password: str, **flow_kwargs: str) -> str:
        flow = app.initiate_auth_code_flow(
            SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post", **flow_kwargs
        )
        sign_in(flow["auth_uri"], username, password, session=session)
        return _username(app.acquire_token_by_auth_code_flow(flow, loopback.wait().fields))

    assert signed_in(USER, DEMO_PASSWORD) == USER
    # A second account in the same browser: the picker's "use another account" leads to the form.
    assert signed_in(SECOND, DEMO_PASSWORD, prompt="select_account") == SECOND
    # Now the picker offers the first account; picking it needs no password.
    assert signed_in(USER, "", prompt="select_account") == USER


def test_browser_command_returns_before_the_app_listens(authority, loopback_socket, tmp_path):
    # Python's webbrowser waits for $BROWSER, and the app answers its loopback only afterwards.
    flow = _app(authority).initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback_socket.redirect_uri, response_mode="form_post"
    )
    log = tmp_path / "ua.log"
    env = {"AUTHBROKER_UA_LOG": str(log), "AUTHBROKER_UA_PASSWORD": DEMO_PASSWORD}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "authbroker.devkit.useragent", flow["auth_uri"]],
        env={**os.environ, **env},
        timeout=10,
    )
    assert done.returncode == 0 and time.monotonic() - started < 5  # a sign-in would block 10 s
    loopback_socket.serve()  # only now does the "app" answer
    arrival = loopback_socket.wait(15)
    assert arrival.fields["state"] == flow["state"] and arrival.fields["code"]
    deadline = time.monotonic() + 5
    while "delivered the code" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "delivered the code" in text and DEMO_PASSWORD not in text


def test_device_login_approves_and_msal_gets_the_token(authority):
    app = _app(authority)
    flow = app.initiate_device_flow(SCOPES)
    page = device_login(flow["verification_uri"], flow["user_code"], SECOND, DEMO_PASSWORD)
    assert SECOND in page
    flow["expires_at"] = time.time() + 20
    result = app.acquire_token_by_device_flow(flow)
    assert _username(result) == SECOND
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["upn"] == SECOND


def test_device_login_with_a_wrong_code_is_refused(authority):
    flow = _app(authority).initiate_device_flow(SCOPES)
    with pytest.raises(SignInError):
        device_login(flow["verification_uri"], "WRONGCODE", USER, DEMO_PASSWORD)


def test_error_page_for_an_unregistered_redirect_uri_is_raised(authority):
    flow = _app(authority).initiate_auth_code_flow(
        SCOPES, redirect_uri="https://app.example/callback", response_mode="form_post"
    )
    with pytest.raises(SignInError, match="AADSTS50011"):
        sign_in(flow["auth_uri"], USER, DEMO_PASSWORD)


def test_an_error_answer_is_delivered_to_the_app_and_returned(authority, loopback):
    # prompt=none in a fresh browser: the authority answers interaction_required to the app.
    flow = _app(authority).initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post", prompt="none"
    )
    delivery = sign_in(flow["auth_uri"], USER, DEMO_PASSWORD)
    assert delivery.error == "interaction_required"
    arrival = loopback.wait()
    assert arrival.fields["error"] == "interaction_required"
    assert arrival.fields["state"] == flow["state"] and "code" not in arrival.fields


def test_without_delivery_the_answer_is_returned_and_the_app_gets_nothing(authority, loopback):
    app = _app(authority)
    flow = app.initiate_auth_code_flow(
        SCOPES, redirect_uri=loopback.redirect_uri, response_mode="form_post"
    )
    answer = sign_in(flow["auth_uri"], USER, DEMO_PASSWORD, deliver=False)
    assert (answer.url, answer.method, answer.status) == (loopback.redirect_uri, "POST", None)
    assert loopback.arrivals.empty()
    assert _username(app.acquire_token_by_auth_code_flow(flow, answer.fields)) == USER
