"""Silent refresh, refresh-token rotation and reuse detection (msal + raw token requests)."""

from __future__ import annotations

import jwt
import pytest
import requests

from fixtures.authority import TEST_CLIENT_ID, browser_sign_in, msal_app, start_authority

STORAGE = "https://storage.azure.com/.default"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory, authority):
    # msal treats tokens with under 5 minutes left as expired: a 60 s lifetime means every
    # silent call must refresh.
    with start_authority(tmp_path_factory.mktemp("short"), "--token-lifetime", "60",
                         ca_from=authority) as running:
        yield running


def _refresh(authority, refresh_token: str, scope: str = STORAGE) -> requests.Response:
    return requests.post(
        authority.url(f"/{authority.tenant_id}/oauth2/v2.0/token"),
        data={"grant_type": "refresh_token", "client_id": TEST_CLIENT_ID,
              "refresh_token": refresh_token, "scope": f"{scope} offline_access openid profile"},
        timeout=10,
    )


def _cached_refresh_token(app) -> str:
    [rt] = list(app.token_cache.search(app.token_cache.CredentialType.REFRESH_TOKEN))
    return rt["secret"]


def test_silent_call_refreshes_expired_token_and_rotates_refresh_token(short_lived):
    app = msal_app(short_lived.authority, short_lived.tenant_id)
    first = browser_sign_in(app, [STORAGE], response_mode="form_post")
    assert first["expires_in"] == 60
    rt1 = _cached_refresh_token(app)
    [account] = app.get_accounts()
    second = app.acquire_token_silent([STORAGE], account=account)
    assert second and second["access_token"] != first["access_token"]
    assert second["token_source"] == "identity_provider"
    rt2 = _cached_refresh_token(app)
    assert rt2 != rt1  # rotated; msal stored the new one
    third = app.acquire_token_silent(["api://other/read"], account=account)  # another resource
    assert jwt.decode(third["access_token"], options={"verify_signature": False})["aud"] == (
        "api://other"
    )


def test_reused_refresh_token_is_rejected_and_revokes_the_family(authority):
    app = msal_app(authority.authority, authority.tenant_id)
    browser_sign_in(app, [STORAGE], response_mode="form_post")
    rt1 = _cached_refresh_token(app)
    ok = _refresh(authority, rt1)
    assert ok.status_code == 200
    rt2 = ok.json()["refresh_token"]
    assert rt2 != rt1
    reused = _refresh(authority, rt1)
    assert reused.status_code == 400
    body = reused.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [70008]
    assert body["error_description"].startswith("AADSTS70008:")
    # The attacker's or the victim's newer token dies with the family.
    revoked = _refresh(authority, rt2)
    assert revoked.status_code == 400 and revoked.json()["error"] == "invalid_grant"
    # msal then reports that the user must sign in again.
    [account] = app.get_accounts()
    assert app.acquire_token_silent_with_error(
        [STORAGE], account=account, force_refresh=True
    )["error"] == "invalid_grant"


def test_unknown_refresh_token_is_invalid_grant(authority):
    response = _refresh(authority, "not-a-token")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
