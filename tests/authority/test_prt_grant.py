"""The PRT request ([MS-OAPXBC] §3.2.5.1.2) and srv_challenge at the local authority: the
happy path, and every refusal answered with Entra's code and the refresh token not spent."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from prt_support import (
    BROKER_CLIENT,
    JWT_BEARER,
    NON_FAMILY_CLIENT,
    OTHER_USER,
    USER,
    LiveAuthority,
    TestDevice,
    entra_code,
    establish,
    request_prt,
)

from authbroker import devicecrypto
from authbroker.authority.device_ca import DeviceCA
from authbroker.authority.prt_store import PRT_LIFETIME
from authbroker.authority.scopes import DRS_SCOPE
from fixtures.authority import TEST_CLIENT_ID, browser_sign_in, msal_app
from fixtures.drs import admin_call, certificate_of, device_id_of, join_body, post_join


@pytest.fixture(scope="module")
def live(authority, tmp_path_factory):
    with LiveAuthority(tmp_path_factory.mktemp("prt-grant"), ca_from=authority.data_dir) as run:
        yield run


@pytest.fixture(scope="module")
def device(live) -> TestDevice:
    return live.register()


def _rt_still_usable(live: LiveAuthority, rt: str) -> None:
    """The refresh token was not spent: it still redeems (and then is spent)."""
    answer = live.post_token(grant_type="refresh_token", refresh_token=rt,
                             client_id=BROKER_CLIENT, scope="openid")
    assert answer.status_code == 200, answer.text


def test_srv_challenge_answers_a_nonce_without_client_id_on_both_paths(live):
    for v1 in (True, False):
        answer = live.post_token(v1=v1, grant_type="srv_challenge")
        assert answer.status_code == 200, answer.text
        assert answer.headers["Cache-Control"] == "no-store"
        nonce = answer.json()["Nonce"]
        assert live.st.prt_nonces.valid(nonce)
        assert live.st.nonces.check(nonce) is not None  # not a PoP resource nonce


def test_openid_configuration_advertises_kdf_v2_and_the_grants(live):
    doc = requests.get(
        live.url(f"/{live.tenant}/v2.0/.well-known/openid-configuration"), timeout=10).json()
    assert doc["capabilities"] == ["kdf_ver2"]
    assert {"srv_challenge", JWT_BEARER} <= set(doc["grant_types_supported"])


def test_prt_request_with_a_refresh_token(live, device):
    prt = establish(live, device)
    body = prt.answer
    assert body["token_type"] == "pop"
    assert body["refresh_token_expires_in"] == PRT_LIFETIME
    assert len(prt.session_key) == 32
    for name in ("expires_in", "ext_expires_in", "expires_on"):
        assert isinstance(body[name], str) and body[name].isdigit()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["aud"] == BROKER_CLIENT
    assert claims["preferred_username"] == USER
    assert claims["upn"] == USER  # §3.2.5.1.2.2: brokers need upn or email
    assert claims["deviceid"] == device.device_id
    assert claims["auth_time"] == 1_700_000_000  # the refresh token's sign-in
    record = live.st.prts.lookup(prt.prt)
    assert record is not None and record.session_key == prt.session_key
    assert record.device_id == device.device_id


def test_prt_request_with_a_password_and_kdf_header(live, device):
    answer = request_prt(live, device, grant_type="password", username=USER,
                         password="Passw0rd!")
    assert answer.status_code == 200, answer.text
    key = devicecrypto.unwrap_session_key(answer.json()["session_key_jwe"],
                                          device.transport_key)
    assert len(key) == 32


def test_the_client_keeps_its_refresh_token_after_a_prt_request(live, device):
    """A PRT request answers with a PRT, not a new refresh token for the client: the client's
    own refresh token stays usable (msal keeps it in its cache and will redeem it)."""
    rt = live.refresh_token()
    assert request_prt(live, device, rt).status_code == 200
    _rt_still_usable(live, rt)


def _refused(live: LiveAuthority, device: TestDevice, code: int, **claims) -> None:
    rt = live.refresh_token()
    answer = request_prt(live, device, rt, **claims)
    assert answer.status_code == 400, answer.text
    assert entra_code(answer) == code, answer.text
    assert "refresh_token" not in answer.json()
    _rt_still_usable(live, rt)


def test_tampered_device_signature_is_refused(live, device):
    _refused(live, device, 50155, key=devicecrypto.new_rsa_key())


def test_certificate_from_another_ca_is_refused(live, device):
    stranger = DeviceCA.ephemeral()
    key = devicecrypto.new_rsa_key()
    cert = stranger.issue(devicecrypto.csr_der(key), device.device_id, live.user().oid)
    _refused(live, device, 50012, key=key,
             cert_der=cert.public_bytes(serialization.Encoding.DER))


def test_disabled_device_is_refused(live):
    other = live.register()
    live.st.devices.disable(other.device_id)
    _refused(live, other, 135011)


def test_deleted_device_is_refused(live):
    other = live.register()
    live.st.devices.delete(other.device_id)
    _refused(live, other, 50155)


def test_unknown_nonce_is_refused(live, device):
    _refused(live, device, 50027, request_nonce="not-a-nonce")


def test_stale_nonce_is_refused(live, device):
    stale = live.st.prt_nonces.issue(now=time.time() - 301)
    _refused(live, device, 50027, request_nonce=stale)


def test_missing_nonce_is_refused(live, device):
    _refused(live, device, 50027, request_nonce="")


def test_nonce_of_another_authority_instance_is_refused(live, device, tmp_path, authority):
    with LiveAuthority(tmp_path / "other", ca_from=authority.data_dir) as other:
        foreign = other.nonce()
    _refused(live, device, 50027, request_nonce=foreign)


def test_pop_resource_nonce_is_not_a_prt_nonce(live, device):
    _refused(live, device, 50027, request_nonce=live.st.nonces.issue())


def test_refresh_token_of_another_user_is_refused(live, device):
    rt = live.refresh_token(OTHER_USER)
    answer = request_prt(live, device, rt)
    assert answer.status_code == 400 and entra_code(answer) == 50155, answer.text
    _rt_still_usable(live, rt)


def test_password_of_another_user_is_refused(live, device):
    answer = request_prt(live, device, grant_type="password", username=OTHER_USER,
                         password="Passw0rd!")
    assert answer.status_code == 400 and entra_code(answer) == 50155, answer.text


def test_wrong_password_is_refused(live, device):
    answer = request_prt(live, device, grant_type="password", username=USER, password="nope")
    assert answer.status_code == 400 and entra_code(answer) == 50126, answer.text


def test_a_request_without_aza_is_refused(live, device):
    rt = live.refresh_token()
    answer = request_prt(live, device, rt, scope="openid")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    _rt_still_usable(live, rt)


def test_request_jwt_without_x5c_or_ctx_is_malformed(live):
    token = jwt.encode({"a": 1}, "k" * 32, algorithm="HS256")
    answer = live.post_token(grant_type=JWT_BEARER, request=token)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    answer = live.post_token(grant_type=JWT_BEARER)
    assert answer.status_code == 400 and answer.json()["error_codes"] == [900144]


def test_the_whole_chain_over_http_on_the_authority_process(authority, tmp_path):
    """Sign-in → DRS join → PRT → exchange for another client → admin disable → refused, all
    against the CLI-started authority (no in-process state)."""
    app = msal_app(authority.authority, authority.tenant_id)
    result = browser_sign_in(app, [DRS_SCOPE], response_mode="form_post")
    [rt] = app.token_cache.search(app.token_cache.CredentialType.REFRESH_TOKEN)
    device_key, transport_key = devicecrypto.new_rsa_key(), devicecrypto.new_rsa_key()
    cert = certificate_of(post_join(authority, result["access_token"],
                                    join_body(device_key, transport_key)))
    der = cert.public_bytes(serialization.Encoding.DER)
    token_url = authority.url(f"/{authority.tenant_id}/oauth2/token")

    def post(**form: str) -> requests.Response:
        return requests.post(token_url, data=form, timeout=10)

    def nonce() -> str:
        return str(post(grant_type="srv_challenge").json()["Nonce"])

    request = devicecrypto.sign_device_jwt(
        {"client_id": TEST_CLIENT_ID, "scope": "openid aza", "grant_type": "refresh_token",
         "refresh_token": rt["secret"], "request_nonce": nonce()}, device_key, der)
    answer = post(grant_type=JWT_BEARER, request=request)
    assert answer.status_code == 200, answer.text
    prt = answer.json()["refresh_token"]
    key = devicecrypto.unwrap_session_key(answer.json()["session_key_jwe"], transport_key)

    def exchange() -> requests.Response:
        claims = {"client_id": NON_FAMILY_CLIENT, "scope": "openid", "refresh_token": prt,
                  "grant_type": "refresh_token", "request_nonce": nonce()}
        return post(grant_type=JWT_BEARER, request=devicecrypto.sign_session_jwt(claims, key))

    body = devicecrypto.decrypt_response(exchange().text, key)
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["deviceid"] \
        == device_id_of(cert)
    disabled = admin_call(authority.data_dir, "POST",
                          f"/admin/devices/{device_id_of(cert)}/disable")
    assert disabled.status_code == 200, disabled.text
    refused = exchange()
    assert refused.status_code == 400 and entra_code(refused) == 135011
