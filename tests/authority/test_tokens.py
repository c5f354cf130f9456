"""Token contents: signatures against the JWKS, v1 storage tokens, v2 tokens, CAE."""

from __future__ import annotations

import jwt
import pytest
import requests

from fixtures.authority import browser_sign_in, msal_app

STORAGE = "https://storage.azure.com/.default"


@pytest.fixture(scope="module")
def jwks(authority) -> jwt.PyJWKSet:
    conf = requests.get(
        authority.url(f"/{authority.tenant_id}/v2.0/.well-known/openid-configuration"), timeout=10
    ).json()
    assert conf["jwks_uri"] == authority.info["jwks_uri"]
    return jwt.PyJWKSet.from_dict(requests.get(conf["jwks_uri"], timeout=10).json())


def _verify(token: str, keys: jwt.PyJWKSet, **kwargs) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["RS256"], **kwargs)


def test_signatures_verify_against_jwks_and_forgeries_fail(authority, jwks):
    app = msal_app(authority.authority, authority.tenant_id)
    result = browser_sign_in(app, ["api://orders/read"], response_mode="form_post")
    issuer = f"{authority.authority}/{authority.tenant_id}/v2.0"
    idt = _verify(result["id_token"], jwks, audience=app.client_id, issuer=issuer)
    assert idt["nonce"] == result["id_token_claims"]["nonce"]
    for claim in ("oid", "sub", "name", "iat", "nbf", "exp", "auth_time"):
        assert claim in idt
    at = _verify(result["access_token"], jwks, audience="api://orders", issuer=issuer)
    assert at["scp"] == "read" and at["azp"] == app.client_id
    head, body, sig = result["access_token"].split(".")
    tampered = jwt.encode({**at, "oid": "someone-else"}, "k" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(f"{head}.{tampered}.{sig}", jwks, audience="api://orders", issuer=issuer)


def test_storage_scope_gets_entra_v1_access_token(authority, jwks):
    app = msal_app(authority.authority, authority.tenant_id)
    result = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert STORAGE in result["scope"].split()
    at = _verify(result["access_token"], jwks, audience="https://storage.azure.com")
    assert at["iss"] == f"https://sts.windows.net/{authority.tenant_id}/"
    assert at["ver"] == "1.0"
    assert at["appid"] == app.client_id
    assert at["upn"] == "user@contoso.example"
    assert at["scp"] == "user_impersonation"
    assert at["tid"] == authority.tenant_id and at["oid"] == result["id_token_claims"]["oid"]
    assert at["nbf"] <= at["iat"] < at["exp"] and at["exp"] - at["iat"] == 3600
    assert result["expires_in"] == 3600
    assert "xms_cc" not in at


def test_cae_capability_marks_token_and_claims_challenge_forces_fresh_token(authority):
    app = msal_app(authority.authority, authority.tenant_id, client_capabilities=["CP1"])
    first = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert jwt.decode(first["access_token"], options={"verify_signature": False})["xms_cc"] == [
        "CP1"
    ]
    [account] = app.get_accounts()
    cached = app.acquire_token_silent([STORAGE], account=account)
    assert cached["access_token"] == first["access_token"]  # from msal's cache
    challenge = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    fresh = app.acquire_token_silent([STORAGE], account=account, claims_challenge=challenge)
    assert fresh["access_token"] != first["access_token"]
    claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert claims["xms_cc"] == ["CP1"]
