"""The daemon's PRT client (daemon/prt.py) against the real local authority (in-process, TLS):
the PRT request with a refresh token, an exchange for a non-family client (``deviceid`` in the
token), renewal keeping the session key, the SSO credential's nonce, refusals typed by their
AADSTS code, and a PRT record that never shows its secrets."""

from __future__ import annotations

import base64
import contextlib
import json
import time

import jwt
import pytest

from authbroker import devicecrypto
from authbroker.daemon import prt
from authbroker.daemon.device import DeviceIdentity
from authority.prt_support import BROKER_CLIENT, NON_FAMILY_CLIENT, LiveAuthority, TestDevice

SCOPE = "https://storage.azure.com/.default openid profile offline_access"


@pytest.fixture(scope="module")
def live(authority, tmp_path_factory):
    with LiveAuthority(tmp_path_factory.mktemp("prt-daemon"), ca_from=authority.data_dir) as run:
        yield run


def identity(live: LiveAuthority, device: TestDevice) -> DeviceIdentity:
    user = live.user()
    return DeviceIdentity(
        device_id=device.device_id, tenant_id=live.tenant,
        authority=live.url(f"/{live.tenant}"), home_account_id=f"{user.oid}.{live.tenant}",
        cert_der=device.cert_der, device_key=device.device_key,
        transport_key=device.transport_key, join_endpoint=live.url("/EnrollmentServer/device/"),
        token_endpoint=live.token_url(), registered_at=int(time.time()),
        cert_not_after=int(time.time()) + 86400)


@pytest.fixture
def client():
    with contextlib.closing(prt.PrtClient()) as made:
        yield made


@pytest.fixture
def device(live) -> DeviceIdentity:
    return identity(live, live.register())


def payload(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_prt_request_exchange_renewal_and_cookie(live, device, client) -> None:
    state = client.request_prt(device, live.refresh_token(), BROKER_CLIENT)
    assert state.kdf_v2 is True  # the authority advertises kdf_ver2
    assert len(state.session_key) == 32 and state.device_id == device.device_id
    assert state.expires_at - state.issued_at == 14 * 86400
    assert state.home_account_id == device.home_account_id

    body = client.exchange(state, prt.token_endpoint(device), NON_FAMILY_CLIENT, SCOPE)
    assert payload(body["access_token"])["deviceid"] == device.device_id
    assert body["refresh_token"] and body["refresh_token"] != state.prt
    assert payload(body["id_token"])["aud"] == NON_FAMILY_CLIENT

    renewed = client.renew(state, prt.token_endpoint(device))
    assert renewed.prt != state.prt and renewed.session_key == state.session_key
    assert renewed.renewed_at >= state.renewed_at and renewed.issued_at == state.issued_at
    again = client.exchange(renewed, prt.token_endpoint(device), NON_FAMILY_CLIENT, SCOPE)
    assert payload(again["access_token"])["deviceid"] == device.device_id

    challenged = client.sso_cookie(renewed, prt.token_endpoint(device), "nonce-from-sso-url")
    claims = devicecrypto.verify_session_jwt(devicecrypto.read_session_jwt(challenged),
                                             renewed.session_key)
    assert claims["request_nonce"] == "nonce-from-sso-url"
    assert claims["refresh_token"] == renewed.prt
    fresh = payload(client.sso_cookie(renewed, prt.token_endpoint(device)))
    assert fresh["request_nonce"] and fresh["request_nonce"] != "nonce-from-sso-url"


def test_request_building_against_devicecrypto(device) -> None:
    form = prt.prt_request_form(device, "rt-1", BROKER_CLIENT, "n-1")
    assert form["grant_type"] == prt.JWT_BEARER
    header, claims, cert = devicecrypto.read_device_jwt(form["request"])
    assert claims == {"client_id": BROKER_CLIENT, "scope": "openid aza", "request_nonce": "n-1",
                      "grant_type": "refresh_token", "refresh_token": "rt-1"}
    assert devicecrypto.verify_device_jwt(form["request"], cert) == claims
    assert isinstance(header["x5c"], list)

    state = prt.PrtState("the-prt", bytes(range(32)), device.device_id, "h.t", 1, 2, 1, True)
    for kdf_v2 in (True, False):
        state.kdf_v2 = kdf_v2
        signed = prt.exchange_form(state, "c-1", "s openid", "n-2", {"req_cnf": "x"})["request"]
        parsed = devicecrypto.read_session_jwt(signed)
        assert parsed.kdf_v2 is kdf_v2
        claims = devicecrypto.verify_session_jwt(parsed, state.session_key)
        assert claims["client_id"] == "c-1" and claims["refresh_token"] == "the-prt"
        assert claims["request_nonce"] == "n-2" and claims["req_cnf"] == "x"
        with pytest.raises(devicecrypto.DeviceCryptoError):
            devicecrypto.verify_session_jwt(parsed, bytes(32))
    answer = devicecrypto.encrypt_response({"access_token": "a"}, state.session_key)
    assert prt.exchange_answer(answer, state) == {"access_token": "a"}
    with pytest.raises(prt.PrtError):
        prt.exchange_answer(answer, prt.PrtState("p", bytes(32), "d", "h", 1, 2, 1, True))


def test_refusals_are_typed_by_their_code(live, device, client) -> None:
    state = client.request_prt(device, live.refresh_token(), BROKER_CLIENT)
    live.st.devices.disable(device.device_id)
    with pytest.raises(prt.PrtError) as err:
        client.exchange(state, prt.token_endpoint(device), NON_FAMILY_CLIENT, SCOPE)
    assert err.value.code == 135011 and err.value.refusal == "disabled"
    assert state.prt not in str(err.value) and state.prt not in repr(err.value)
    forged = prt.PrtState("not-a-prt", state.session_key, device.device_id, "h", 1, 2, 1, True)
    with pytest.raises(prt.PrtError) as err:
        client.exchange(forged, prt.token_endpoint(device), NON_FAMILY_CLIENT, SCOPE)
    assert err.value.refusal == "expired"  # 70008: unknown PRT


def test_stale_cached_nonce_is_fetched_again(live, device, client) -> None:
    state = client.request_prt(device, live.refresh_token(), BROKER_CLIENT)
    endpoint = prt.token_endpoint(device)
    client._nonces[endpoint] = ("stale-nonce", time.monotonic() + 60)
    body = client.exchange(state, endpoint, NON_FAMILY_CLIENT, SCOPE)
    assert body["access_token"]
    assert client._nonces[endpoint][0] != "stale-nonce"


def test_record_round_trip_without_secrets_in_repr() -> None:
    key = bytes(range(32))
    state = prt.PrtState("0.secret-prt", key, "dev", "oid.tid", 10, 20, 15, False)
    assert prt.PrtState.from_record(state.to_record()) == state
    shown = repr(state) + str(state) + json.dumps(state.status(now=0))
    for secret in ("0.secret-prt", base64.b64encode(key).decode()):
        assert secret not in shown
    assert state.status(now=0) == {"prt": "active", "expiresOn": 20, "renewedAt": 15}
    assert state.status(now=30)["prt"] == "expired"
    for bad in ("", "{}", '{"v": 1}', "[1]", state.to_record().replace('"v":1', '"v":9')):
        with pytest.raises(ValueError):
            prt.PrtState.from_record(bad)


@pytest.mark.parametrize(("url", "nonce"), [
    ("https://h/t/oauth2/authorize?client_id=c&sso_nonce=AbC-1", "AbC-1"),
    ("https://h/t/oauth2/authorize?client_id=c", None),
    ("", None),
    ("https://h/a?sso_nonce=", None),
])
def test_sso_nonce_of_an_sso_url(url: str, nonce: str | None) -> None:
    assert prt.sso_nonce(url) == nonce
