"""``x-ms-RefreshTokenCredential`` at ``/authorize`` ([MS-OAPXBC] §3.2.5.2.1.3): a valid one
signs the device's user in without a page (header or cookie, v2 and v1 paths); a well-signed
one with a bad nonce gets the ``sso_nonce`` challenge, whose retry signs in; a bad one is
ignored (the sign-in page)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from prt_support import (
    NON_FAMILY_CLIENT,
    LiveAuthority,
    Prt,
    establish,
    sso_credential,
)

from authbroker.authority.sso_credential import CREDENTIAL

REDIRECT = "http://localhost:8400"


@pytest.fixture(scope="module")
def live(authority, tmp_path_factory):
    with LiveAuthority(tmp_path_factory.mktemp("sso"), ca_from=authority.data_dir) as run:
        yield run


@pytest.fixture(scope="module")
def device(live):
    return live.register()


@pytest.fixture
def prt(live, device) -> Prt:
    return establish(live, device)


def _authorize_url(live: LiveAuthority, *, v1: bool = False, **extra: str) -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {"client_id": NON_FAMILY_CLIENT, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "openid profile offline_access", "state": "s1",
              "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256",
              **extra}
    path = "oauth2/authorize" if v1 else "oauth2/v2.0/authorize"
    return live.url(f"/{live.tenant}/{path}?{urlencode(params)}"), verifier


def _get(url: str, credential: str | None, *, cookie: bool = False) -> requests.Response:
    headers, cookies = {}, {}
    if credential is not None:
        (cookies if cookie else headers)[CREDENTIAL] = credential
    return requests.get(url, headers=headers, cookies=cookies, allow_redirects=False, timeout=10)


def _code(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text[:300]
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    return query["code"][0]


def _sso_nonce(answer: requests.Response, url: str) -> tuple[str, str]:
    assert answer.status_code == 302, answer.text[:300]
    location = answer.headers["Location"]
    assert urlsplit(location).path == urlsplit(url).path
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == [NON_FAMILY_CLIENT]
    [nonce] = query["sso_nonce"]
    return location, nonce


def _is_sign_in_page(answer: requests.Response) -> None:
    assert answer.status_code == 200, answer.status_code
    assert "password" in answer.text.lower() and "<form" in answer.text


@pytest.mark.parametrize("cookie", [False, True], ids=["header", "cookie"])
@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
def test_valid_credential_signs_in_without_a_page(live, device, prt, cookie, v1):
    url, verifier = _authorize_url(live, v1=v1)
    credential = sso_credential(prt, request_nonce=live.nonce())
    code = _code(_get(url, credential, cookie=cookie))
    answer = live.post_token(v1=v1, grant_type="authorization_code", code=code,
                             client_id=NON_FAMILY_CLIENT, redirect_uri=REDIRECT,
                             code_verifier=verifier)
    assert answer.status_code == 200, answer.text
    access = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert access["deviceid"] == device.device_id
    assert access["amr"] == ["pwd"] and access["auth_time"] == 1_700_000_000
    assert access["preferred_username"] == "user@contoso.example"


def test_the_v1_endpoint_takes_a_resource_instead_of_scopes(live, device, prt):
    """A v1 client (a browser on a v1 app) names ``resource``: its token is for that
    resource, from the device's SSO credential, with no page."""
    url, verifier = _authorize_url(live, v1=True, scope="", resource="https://storage.azure.com")
    code = _code(_get(url, sso_credential(prt, request_nonce=live.nonce())))
    answer = live.post_token(v1=True, grant_type="authorization_code", code=code,
                             client_id=NON_FAMILY_CLIENT, redirect_uri=REDIRECT,
                             code_verifier=verifier)
    assert answer.status_code == 200, answer.text
    access = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert access["aud"] == "https://storage.azure.com" and access["deviceid"] == device.device_id


@pytest.mark.parametrize("case", ["stale", "replayed", "iat-only", "unknown"])
def test_bad_nonce_gets_a_challenge_whose_retry_signs_in(live, prt, case):
    url, _ = _authorize_url(live)
    if case == "stale":
        claims = {"request_nonce": live.st.prt_nonces.issue(now=time.time() - 400)}
    elif case == "replayed":
        claims = {"request_nonce": live.nonce()}
        _code(_get(url, sso_credential(prt, **claims)))  # the first use signs in
    elif case == "iat-only":
        claims = {"iat": int(time.time())}
    else:
        claims = {"request_nonce": "made-up"}
    location, nonce = _sso_nonce(_get(url, sso_credential(prt, **claims)), url)
    assert live.st.prt_nonces.valid(nonce)
    _code(_get(location, sso_credential(prt, request_nonce=nonce)))
    # The same answer to the challenge again: its nonce is spent, the URL carries our
    # sso_nonce already (loop guard): the sign-in page, not another challenge.
    _is_sign_in_page(_get(location, sso_credential(prt, request_nonce=nonce)))


def test_sso_nonce_in_the_url_is_replaced_not_repeated(live, prt):
    url, _ = _authorize_url(live, sso_nonce="someone-elses")
    location, nonce = _sso_nonce(_get(url, sso_credential(prt, iat=int(time.time()))), url)
    assert nonce != "someone-elses"


def test_bad_signature_unknown_prt_and_disabled_device_are_ignored(live, prt):
    url, _ = _authorize_url(live)
    nonce = live.nonce()
    forged = Prt(prt.prt, b"\x02" * 32)
    _is_sign_in_page(_get(url, sso_credential(forged, request_nonce=nonce)))
    _is_sign_in_page(_get(url, sso_credential(Prt("1.nope", prt.session_key),
                                              request_nonce=nonce)))
    _is_sign_in_page(_get(url, "not-a-jwt"))
    assert live.st.prt_nonces.consume(nonce)  # none of those spent the nonce


def test_disabled_device_is_ignored(live):
    other = live.register()
    prt = establish(live, other)
    live.st.devices.disable(other.device_id)
    url, _ = _authorize_url(live)
    _is_sign_in_page(_get(url, sso_credential(prt, request_nonce=live.nonce())))


def test_prompt_login_ignores_the_credential(live, prt):
    url, _ = _authorize_url(live, prompt="login")
    _is_sign_in_page(_get(url, sso_credential(prt, request_nonce=live.nonce())))
