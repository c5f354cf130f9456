"""The PRT exchange ([MS-OAPXBC] §3.2.5.1.3) at the local authority: tokens for a non-family
client in an encrypted answer, the refusals, renewal with its grace, PoP, and PRTs that survive
an authority restart."""

from __future__ import annotations

import json
import stat
import time

import jwt
import pytest
from prt_support import (
    BROKER_CLIENT,
    NON_FAMILY_CLIENT,
    LiveAuthority,
    Prt,
    entra_code,
    establish,
    exchange,
    exchange_jwt,
)

from authbroker import devicecrypto, shr
from authbroker.authority.directory import FAMILY_CLIENTS


@pytest.fixture(scope="module")
def live(authority, tmp_path_factory):
    with LiveAuthority(tmp_path_factory.mktemp("prt-exchange"), ca_from=authority.data_dir) as run:
        yield run


@pytest.fixture(scope="module")
def device(live):
    return live.register()


@pytest.fixture
def prt(live, device) -> Prt:
    return establish(live, device)


def _tokens(answer, prt: Prt) -> dict:
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/jose")
    assert not answer.text.startswith("{")
    return devicecrypto.decrypt_response(answer.text, prt.session_key)


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "v2"])
@pytest.mark.parametrize("kdf_v2", [True, False], ids=["kdf2", "kdf1"])
def test_exchange_for_a_non_family_client(live, device, prt, v1, kdf_v2):
    assert NON_FAMILY_CLIENT not in FAMILY_CLIENTS
    body = _tokens(exchange(live, prt, v1=v1, kdf_v2=kdf_v2,
                            scope="https://storage.azure.com/.default openid offline_access"),
                   prt)
    assert body["token_type"] == "Bearer" and "foci" not in body
    access = _claims(body["access_token"])
    assert access["aud"] == "https://storage.azure.com"
    assert access["appid"] == NON_FAMILY_CLIENT
    assert access["deviceid"] == device.device_id
    assert access["amr"] == ["pwd"] and access["auth_time"] == 1_700_000_000
    ident = _claims(body["id_token"])
    assert ident["aud"] == NON_FAMILY_CLIENT and ident["deviceid"] == device.device_id
    assert ident["auth_time"] == 1_700_000_000
    # The client's own refresh token works like any other (a new chain, no device claims).
    again = live.post_token(v1=v1, grant_type="refresh_token", client_id=NON_FAMILY_CLIENT,
                            refresh_token=body["refresh_token"], scope="openid")
    assert again.status_code == 200, again.text
    assert body["client_info"]


def test_exchange_with_a_v1_resource_and_a_family_client(live, prt):
    family = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
    body = _tokens(exchange(live, prt, client_id=family, scope=None,
                            resource="https://management.azure.com"), prt)
    assert body["foci"] == "1"
    assert _claims(body["access_token"])["aud"] == "https://management.azure.com"


def test_exchange_for_a_pop_token(live, prt):
    key = shr.new_key()
    kid = shr.thumbprint(shr.public_jwk(key))
    body = _tokens(exchange(live, prt, token_type="pop", req_cnf=shr.req_cnf(kid)), prt)
    assert body["token_type"] == "pop"
    assert _claims(body["access_token"])["cnf"] == {"kid": kid}


def _refused(answer, code: int) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert entra_code(answer) == code, answer.text


def test_wrong_session_key_signature_is_refused(live, prt):
    _refused(exchange(live, prt, session_key=b"\x01" * 32), 50006)


def test_payload_changed_after_signing_is_refused(live, prt):
    token = exchange_jwt(prt, live.nonce())
    header, payload, sig = token.split(".")
    claims = _claims(token)
    claims["client_id"] = BROKER_CLIENT
    forged = devicecrypto.b64url(json.dumps(claims).encode())
    answer = live.post_token(grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
                             request=f"{header}.{forged}.{sig}")
    _refused(answer, 50006)


def test_unknown_prt_is_refused(live, prt):
    _refused(exchange(live, Prt("1.unknown", prt.session_key)), 70008)


def test_stale_and_unknown_nonces_are_refused(live, prt):
    _refused(exchange(live, prt, nonce=live.st.prt_nonces.issue(now=time.time() - 400)), 50027)
    _refused(exchange(live, prt, nonce="forged"), 50027)


def test_a_nonce_serves_several_exchanges_within_its_lifetime(live, prt):
    nonce = live.nonce()
    for _ in range(2):
        _tokens(exchange(live, prt, nonce=nonce), prt)


def test_disabled_then_deleted_device_is_refused(live):
    other = live.register()
    prt = establish(live, other)
    live.st.devices.disable(other.device_id)
    _refused(exchange(live, prt), 135011)
    live.st.devices.enable(other.device_id)
    _tokens(exchange(live, prt), prt)
    live.st.devices.delete(other.device_id)
    _refused(exchange(live, prt), 50155)


def test_expired_request_is_refused(live, prt):
    answer = exchange(live, prt, iat=str(int(time.time()) - 7200),
                      exp=str(int(time.time()) - 3600))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def test_renewal_rotates_and_the_old_prt_lives_for_the_grace_only(live, prt):
    body = _tokens(exchange(live, prt, client_id=BROKER_CLIENT, scope="openid aza ugs"), prt)
    new = Prt(body["refresh_token"], prt.session_key)  # the session key is kept
    assert new.prt != prt.prt and body["refresh_token_expires_in"] == live.st.prts.lifetime
    assert "session_key_jwe" not in body
    _tokens(exchange(live, new), new)
    _tokens(exchange(live, prt), prt)  # within the grace
    store = live.st.prts
    real_clock = store.clock
    store.clock = lambda: real_clock() + store.grace + 1
    try:
        _refused(exchange(live, prt), 70008)
        _tokens(exchange(live, new), new)
    finally:
        store.clock = real_clock


def test_prts_survive_an_authority_restart(authority, tmp_path):
    data_dir = tmp_path / "restart"
    with LiveAuthority(data_dir, ca_from=authority.data_dir, prt_lifetime=7200) as first:
        device = first.register()
        prt = establish(first, device)
    assert prt.answer["refresh_token_expires_in"] == 7200  # --prt-lifetime
    path = data_dir / "prts.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert prt.prt not in path.read_text()  # only digests of the PRTs themselves
    with LiveAuthority(data_dir) as second:
        body = _tokens(exchange(second, prt), prt)
        assert _claims(body["access_token"])["deviceid"] == device.device_id
