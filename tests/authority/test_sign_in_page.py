"""The sign-in page as a person (or a scripted browser) meets it: SSO session, account picker,
login_hint, prompt=login / none, and personal accounts via MSA passthrough."""

from __future__ import annotations

from urllib.parse import urljoin

import requests

from authbroker.authority import CONSUMER_TENANT_ID, DEMO_PASSWORD
from fixtures.authority import browser_sign_in, msal_app, parse_page, result_fields, sign_in

SCOPES = ["api://orders/read"]
PASSTHROUGH = "&msal_request_type=consumer_passthrough"  # what msal's broker path adds


def _start(app, session: requests.Session, **flow_kwargs):
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="http://localhost:8400",
                                       response_mode="form_post", **flow_kwargs)
    return flow, session.get(flow["auth_uri"], allow_redirects=False, timeout=10)


def _finish(app, flow, answer) -> dict:
    fields = result_fields(answer)
    fields.pop("__action__")
    return app.acquire_token_by_auth_code_flow(flow, fields)


def test_form_post_answer_auto_submits_and_has_a_button(authority):
    app = msal_app(authority.authority, authority.tenant_id)
    flow, page = _start(app, requests.Session())
    [form] = parse_page(page.text)[0]
    answer = requests.post(urljoin(page.url, form.action), data={
        **form.fields, "username": "user@contoso.example", "password": DEMO_PASSWORD},
        timeout=10)
    [post] = parse_page(answer.text)[0]
    assert post.method == "POST" and post.action == "http://localhost:8400"
    assert {"code", "state", "client_info"} <= set(post.fields)
    assert post.buttons, "a visible submit button for browsers without JavaScript"
    assert "document.forms[0].submit()" in answer.text


def test_session_gives_account_picker_and_sso(authority):
    app = msal_app(authority.authority, authority.tenant_id)
    browser = requests.Session()
    browser_sign_in(app, SCOPES, session=browser, response_mode="form_post")
    browser_sign_in(app, SCOPES, session=browser, response_mode="form_post", prompt="login",
                    username="second@contoso.example")
    # select_account: one button per signed-in account plus "use another account"
    flow, picker = _start(app, browser, prompt="select_account")
    [form] = parse_page(picker.text)[0]
    assert {b[:2] for b in form.buttons} == {("account", "user@contoso.example"),
                                             ("account", "second@contoso.example"),
                                             ("account", "")}
    chosen = browser.post(urljoin(picker.url, form.action),
                          data={**form.fields, "account": "second@contoso.example"}, timeout=10)
    result = _finish(app, flow, chosen)
    assert result["id_token_claims"]["preferred_username"] == "second@contoso.example"
    # "use another account" gives the sign-in form
    flow, picker = _start(app, browser, prompt="select_account")
    [form] = parse_page(picker.text)[0]
    other = browser.post(urljoin(picker.url, form.action), data={**form.fields, "account": ""},
                         timeout=10)
    assert {"username", "password"} <= set(parse_page(other.text)[0][0].fields)
    # login_hint naming a signed-in account: single sign-on, no page at all
    flow, sso = _start(app, browser, login_hint="user@contoso.example")
    assert _finish(app, flow, sso)["id_token_claims"]["preferred_username"] == (
        "user@contoso.example"
    )
    # prompt=none with a session and a hint: silent success
    flow, silent = _start(app, browser, prompt="none", login_hint="second@contoso.example")
    assert "access_token" in _finish(app, flow, silent)
    # prompt=login forces the form even with a session, pre-filled from login_hint
    flow, forced = _start(app, browser, prompt="login", login_hint="second@contoso.example")
    [form] = parse_page(forced.text)[0]
    assert form.fields["username"] == "second@contoso.example" and "password" in form.fields


def test_prompt_none_without_session_is_interaction_required(authority):
    app = msal_app(authority.authority, authority.tenant_id)
    flow, answer = _start(app, requests.Session(), prompt="none")
    result = _finish(app, flow, answer)
    assert result["error"] == "interaction_required"


def test_personal_account_only_with_msa_passthrough_on_organizations(authority):
    personal = "personal@outlook.example"
    orgs = msal_app(authority.authority, "organizations")
    flow, page = _start(orgs, requests.Session())
    [form] = parse_page(page.text)[0]
    refused = requests.post(urljoin(page.url, form.action), data={
        **form.fields, "username": personal, "password": DEMO_PASSWORD}, timeout=10)
    assert "AADSTS50020" in refused.text and not result_fields_or_none(refused)
    flow = orgs.initiate_auth_code_flow(SCOPES, redirect_uri="http://localhost:8400",
                                        response_mode="form_post")
    fields = sign_in(requests.Session(), flow["auth_uri"] + PASSTHROUGH, personal, DEMO_PASSWORD)
    fields.pop("__action__")
    result = orgs.acquire_token_by_auth_code_flow(flow, fields)
    assert "access_token" in result, result
    assert result["id_token_claims"]["tid"] == CONSUMER_TENANT_ID
    # the tenant GUID authority never takes a personal account
    tenant_app = msal_app(authority.authority, authority.tenant_id)
    flow = tenant_app.initiate_auth_code_flow(SCOPES, redirect_uri="http://localhost:8400",
                                              response_mode="form_post")
    page = requests.get(flow["auth_uri"] + PASSTHROUGH, timeout=10)
    [form] = parse_page(page.text)[0]
    refused = requests.post(urljoin(page.url, form.action), data={
        **form.fields, "username": personal, "password": DEMO_PASSWORD}, timeout=10)
    assert "AADSTS50020" in refused.text
    # consumers takes it directly; the domain name works as a tenant too
    assert "access_token" in browser_sign_in(
        msal_app(authority.authority, "consumers"), SCOPES, username=personal,
        response_mode="form_post")
    assert "access_token" in browser_sign_in(
        msal_app(authority.authority, "contoso.example"), SCOPES, response_mode="form_post")


def result_fields_or_none(answer):
    try:
        return result_fields(answer)
    except AssertionError:
        return None
