"""PoP fixtures for the authority's tests: a PoP key, token requests, a PoP-bound access token."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from authbroker import shr
from fixtures.authority import TEST_CLIENT_ID, browser_sign_in, msal_app

TokenPost = Callable[..., requests.Response]


@pytest.fixture(scope="module")
def pop_key():
    return shr.new_key()


@pytest.fixture(scope="module")
def token_post(authority) -> TokenPost:
    """POST a form to the session authority's token endpoint (``client_id`` defaults to the
    test client)."""
    def post(**form: str) -> requests.Response:
        form.setdefault("client_id", TEST_CLIENT_ID)
        return requests.post(authority.url(f"/{authority.tenant_id}/oauth2/v2.0/token"),
                             data=form, timeout=10)
    return post


@pytest.fixture
def refresh_token(authority) -> Callable[..., str]:
    """A fresh (bearer) sign-in's refresh token: ``refresh_token(scope, client_id=...)``."""
    def sign_in(scope: str, client_id: str = TEST_CLIENT_ID) -> str:
        app = msal_app(authority.authority, authority.tenant_id, client_id=client_id)
        result = browser_sign_in(app, [scope], response_mode="form_post")
        assert result.get("token_type") == "Bearer", result.get("error_description")
        [rt] = app.token_cache.search(app.token_cache.CredentialType.REFRESH_TOKEN)
        return str(rt["secret"])
    return sign_in


@pytest.fixture(scope="module")
def pop_access_token(authority, pop_key, token_post) -> str:
    """An access token for the demo resource bound to ``pop_key`` (a refresh-token grant)."""
    app = msal_app(authority.authority, authority.tenant_id)
    browser_sign_in(app, [authority.pop_resource_scope], response_mode="form_post")
    [rt] = app.token_cache.search(app.token_cache.CredentialType.REFRESH_TOKEN)
    answer = token_post(grant_type="refresh_token", refresh_token=rt["secret"],
                        scope=authority.pop_resource_scope, token_type="pop",
                        req_cnf=shr.req_cnf(shr.thumbprint(shr.public_jwk(pop_key))))
    assert answer.status_code == 200, answer.text
    assert answer.json()["token_type"] == "pop"
    return str(answer.json()["access_token"])
