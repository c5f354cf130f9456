"""PoP access tokens from the token endpoint: ``token_type=pop`` + ``req_cnf`` on every grant
(authorization code, refresh token, family refresh token, device code), and the Entra-style
errors for malformed requests."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
import requests

from authbroker import shr
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME, device_login
from fixtures.authority import TEST_REDIRECT, msal_app, sign_in

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
VS_CODE = "aebc6443-996d-45c2-90f0-388ff96faa56"


@pytest.fixture(scope="module")
def kid(pop_key) -> str:
    return shr.thumbprint(shr.public_jwk(pop_key))


@pytest.fixture(scope="module")
def jwks(authority) -> jwt.PyJWKSet:
    keys = requests.get(authority.info["jwks_uri"], timeout=10).json()
    return jwt.PyJWKSet.from_dict(keys)


def _claims(token: str, jwks: jwt.PyJWKSet, audience: str) -> dict:
    key = jwks[jwt.get_unverified_header(token)["kid"]].key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience)


def _pop(kid: str) -> dict[str, str]:
    return {"token_type": "pop", "req_cnf": shr.req_cnf(kid)}


def test_json_line_names_the_resource_and_its_scope(authority):
    assert authority.pop_resource == f"{authority.authority}/resource/pop"
    assert authority.pop_resource_scope == "api://authbroker-pop/.default"


def test_authorization_code_grant_with_msal_gets_a_pop_token(authority, kid, jwks):
    scope = authority.pop_resource_scope
    for client_id in (AZURE_CLI, "3c5d6b41-7f0c-4f6e-9a77-1f2b3c4d5e6f"):
        app = msal_app(authority.authority, authority.tenant_id, client_id=client_id)
        flow = app.initiate_auth_code_flow([scope], redirect_uri=TEST_REDIRECT,
                                           response_mode="form_post")
        fields = sign_in(requests.Session(), flow["auth_uri"], DEFAULT_USERNAME,
                         DEFAULT_PASSWORD)
        fields.pop("__action__")
        result = app.acquire_token_by_auth_code_flow(flow, fields, data=_pop(kid))
        assert result.get("token_type") == "pop", result.get("error_description")
        claims = _claims(result["access_token"], jwks, "api://authbroker-pop")
        assert claims["cnf"] == {"kid": kid}
        assert claims["ver"] == "2.0" and claims["azp"] == client_id
        assert claims["iss"] == f"{authority.authority}/{authority.tenant_id}/v2.0"
        assert result["refresh_token"]


def test_refresh_grant_pop_then_bearer_with_the_same_refresh_token(
        authority, token_post, refresh_token, kid, jwks):
    scope = authority.pop_resource_scope
    rt = refresh_token(scope)
    pop = token_post(grant_type="refresh_token", refresh_token=rt, scope=scope, **_pop(kid))
    assert pop.status_code == 200, pop.text
    assert pop.json()["token_type"] == "pop"
    assert _claims(pop.json()["access_token"], jwks, "api://authbroker-pop")["cnf"] == {
        "kid": kid}
    # The refresh token issued with it is an ordinary one: a bearer request redeems it.
    bearer = token_post(grant_type="refresh_token", refresh_token=pop.json()["refresh_token"],
                        scope=scope)
    assert bearer.status_code == 200, bearer.text
    assert bearer.json()["token_type"] == "Bearer"
    assert "cnf" not in _claims(bearer.json()["access_token"], jwks, "api://authbroker-pop")
    # req_cnf with padding is tolerated; token_type is case-insensitive; other members ignored.
    padded = base64.urlsafe_b64encode(json.dumps({"kid": kid, "xms_ksl": "sw"}).encode())
    again = token_post(grant_type="refresh_token", refresh_token=bearer.json()["refresh_token"],
                       scope=scope, token_type="PoP", req_cnf=padded.decode())
    assert again.status_code == 200 and again.json()["token_type"] == "pop", again.text


def test_family_refresh_token_redeemed_by_another_member_with_pop(
        authority, token_post, refresh_token, kid, jwks):
    rt = refresh_token(authority.pop_resource_scope, client_id=AZURE_CLI)
    answer = token_post(grant_type="refresh_token", refresh_token=rt, client_id=VS_CODE,
                        scope=authority.pop_resource_scope, **_pop(kid))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "pop" and body["foci"] == "1"
    claims = _claims(body["access_token"], jwks, "api://authbroker-pop")
    assert claims["cnf"] == {"kid": kid} and claims["azp"] == VS_CODE


def test_device_code_grant_with_msal_gets_a_pop_token(authority, kid, jwks):
    app = msal_app(authority.authority, authority.tenant_id)
    flow = app.initiate_device_flow(scopes=[authority.pop_resource_scope])
    device_login(flow["verification_uri"], flow["user_code"], DEFAULT_USERNAME,
                 DEFAULT_PASSWORD)
    result = app.acquire_token_by_device_flow(flow, data=_pop(kid))
    assert result.get("token_type") == "pop", result.get("error_description")
    assert _claims(result["access_token"], jwks, "api://authbroker-pop")["cnf"] == {"kid": kid}


def test_bearer_requests_are_unchanged(authority, token_post, refresh_token, jwks):
    answer = token_post(grant_type="refresh_token", scope=authority.pop_resource_scope,
                        refresh_token=refresh_token(authority.pop_resource_scope),
                        token_type="Bearer")
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
    assert "cnf" not in _claims(answer.json()["access_token"], jwks, "api://authbroker-pop")


def _b64(raw: bytes) -> str:
    return shr.b64url(raw)


MALFORMED = {
    "not base64url": ({"token_type": "pop", "req_cnf": "not*base64"}, 90100, "req_cnf"),
    "not JSON": ({"token_type": "pop", "req_cnf": _b64(b"kid=abc")}, 90100, "req_cnf"),
    "not UTF-8": ({"token_type": "pop", "req_cnf": _b64(b"\xff\xfe")}, 90100, "req_cnf"),
    "a JSON array": ({"token_type": "pop", "req_cnf": _b64(b'["kid"]')}, 90100, "req_cnf"),
    "no kid": ({"token_type": "pop", "req_cnf": _b64(b'{"jwk": {}}')}, 90100, "req_cnf"),
    "kid not a string": ({"token_type": "pop", "req_cnf": _b64(b'{"kid": 7}')}, 90100,
                         "req_cnf"),
    "empty kid": ({"token_type": "pop", "req_cnf": _b64(b'{"kid": ""}')}, 90100, "req_cnf"),
    "kid too long": ({"token_type": "pop", "req_cnf": shr.req_cnf("k" * 200)}, 90100,
                     "req_cnf"),
    "kid with a newline": ({"token_type": "pop", "req_cnf": shr.req_cnf("a\nb")}, 90100,
                           "req_cnf"),
    "pop without req_cnf": ({"token_type": "pop"}, 900144, "req_cnf"),
    "pop with empty req_cnf": ({"token_type": "pop", "req_cnf": ""}, 900144, "req_cnf"),
    "an unknown token_type": ({"token_type": "ssh-cert", "req_cnf": shr.req_cnf("x")}, 90100,
                              "token_type"),
    "req_cnf without pop": ({"req_cnf": shr.req_cnf("x")}, 90100, "req_cnf"),
}
GRANTS = {
    "refresh_token": {"grant_type": "refresh_token", "refresh_token": "junk"},
    "authorization_code": {"grant_type": "authorization_code", "code": "junk",
                           "redirect_uri": TEST_REDIRECT, "code_verifier": "v" * 43},
    "device_code": {"grant_type": DEVICE_CODE, "device_code": "junk"},
}


@pytest.mark.parametrize("grant", GRANTS)
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_pop_requests_get_entra_errors_before_any_grant_is_looked_at(
        token_post, grant, case):
    extra, code, parameter = MALFORMED[case]
    answer = token_post(**GRANTS[grant], scope="api://authbroker-pop/.default", **extra)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request" and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert f"'{parameter}'" in body["error_description"]
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_malformed_pop_request_does_not_spend_the_refresh_token(
        authority, token_post, refresh_token, kid):
    scope = authority.pop_resource_scope
    rt = refresh_token(scope)
    bad = token_post(grant_type="refresh_token", refresh_token=rt, scope=scope,
                     token_type="pop", req_cnf="%%%")
    assert bad.status_code == 400 and bad.json()["error_codes"] == [90100]
    good = token_post(grant_type="refresh_token", refresh_token=rt, scope=scope, **_pop(kid))
    assert good.status_code == 200 and good.json()["token_type"] == "pop", good.text
