"""[MS-DVRJ] at the local authority: discovery, the join and its refusals (ErrorDetails bodies,
nothing recorded), the DRS token names."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
import time
import uuid

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authbroker import devicecrypto
from authbroker.authority.device_ca import DEVICE_ID_OID, USER_OID_OID, guid_from_extension
from authbroker.authority.scopes import DRS_APP_ID, DRS_RESOURCE
from fixtures.drs import certificate_of, device_id_of, drs_token, join_body, post_join

GRAPH = "https://graph.microsoft.com/User.Read"


@pytest.fixture(scope="module")
def token(authority) -> str:
    return drs_token(authority)


def devices_file(authority) -> bytes:
    path = authority.data_dir / "devices.json"
    return path.read_bytes() if path.exists() else b""


def test_discovery_names_the_join_endpoint_on_this_authority(authority):
    for segment in (authority.tenant_id, "contoso.example", "organizations"):
        answer = requests.get(f"{authority.authority}/{segment}/Discover?api-version=1.9",
                              headers={"Authorization": "Bearer ignored"}, timeout=10)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert doc["DeviceJoinService"] == {
            "JoinEndpoint": f"{authority.authority}/EnrollmentServer/device/",
            "JoinResourceId": "urn:ms-drs:127.0.0.1", "ServiceVersion": "2.0"}
        assert doc["AuthenticationService"]["OAuth2"]["TokenEndpoint"] == \
            f"{authority.authority}/{authority.tenant_id}/oauth2/token"
        assert doc["TenantInfo"]["TenantId"] == authority.tenant_id
        assert doc["IdentityProviderService"]["Federated"] is False
        assert doc["DiscoveryService"]["DiscoveryEndpoint"] == authority.device_discovery
    unknown = requests.get(f"{authority.authority}/nowhere.example/Discover", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["ErrorType"] == "TenantNotFound"


def test_json_line_and_index_name_the_device_endpoints(authority):
    index = requests.get(authority.url("/"), timeout=10).json()
    for key, path in (("device_discovery", f"/{authority.tenant_id}/Discover"),
                      ("device_join_endpoint", "/EnrollmentServer/device/"),
                      ("device_admin", "/admin/devices")):
        assert authority.info[key] == index[key] == authority.url(path)


@pytest.mark.parametrize("scope", [f"{DRS_APP_ID}/.default", f"{DRS_RESOURCE}/.default",
                                   "urn:ms-drs:enterpriseregistration.windows.net/.default"])
def test_every_drs_name_gets_a_token_for_the_drs(authority, scope):
    claims = jwt.decode(drs_token(authority, scope), options={"verify_signature": False})
    assert claims["aud"] == DRS_RESOURCE
    assert claims["iss"] == f"https://sts.windows.net/{authority.tenant_id}/"  # v1, as Entra


def test_join_issues_a_device_certificate_from_the_device_ca(authority, token):
    key = devicecrypto.new_rsa_key()
    answer = post_join(authority, token, join_body(key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["User"] == {"Upn": "user@contoso.example"}
    assert body["MembershipChanges"] == []
    cert = certificate_of(answer)
    der = base64.b64decode(body["Certificate"]["RawBody"])
    assert body["Certificate"]["Thumbprint"] == hashlib.sha1(der).hexdigest().upper()

    ca = x509.load_pem_x509_certificate((authority.data_dir / "device-ca.pem").read_bytes())
    assert ca.subject != x509.load_pem_x509_certificate(
        (authority.data_dir / "ca.pem").read_bytes()).subject  # not the TLS CA
    cert.verify_directly_issued_by(ca)
    device_id = device_id_of(cert)
    assert str(uuid.UUID(device_id)) == device_id
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert guid_from_extension(cert, DEVICE_ID_OID) == device_id
    assert guid_from_extension(cert, USER_OID_OID) == claims["oid"]
    for oid in (DEVICE_ID_OID, USER_OID_OID):
        assert not cert.extensions.get_extension_for_oid(oid).critical
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < lifetime < dt.timedelta(days=366)

    recorded = {d["deviceId"]: d for d in json.loads(devices_file(authority))["devices"]}
    assert recorded[device_id]["certificateThumbprint"] == body["Certificate"]["Thumbprint"]
    assert recorded[device_id]["userOid"] == claims["oid"]
    assert recorded[device_id]["state"] == "enabled"


def test_a_jwk_transport_key_is_accepted(authority, token):
    transport = devicecrypto.new_rsa_key().public_key().public_numbers()
    jwk = {"kty": "RSA", "e": devicecrypto.b64url(transport.e.to_bytes(3, "big")),
           "n": devicecrypto.b64url(transport.n.to_bytes(256, "big"))}
    answer = post_join(authority, token, join_body(TransportKey=json.dumps(jwk)))
    assert answer.status_code == 200, answer.text


def _csr(key_size: int = 2048, *, tamper: bool = False) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, devicecrypto.CSR_SUBJECT_CN)])).sign(
        key, hashes.SHA256())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    if tamper:
        der[-1] ^= 0x01  # the last byte of the signature
    return base64.b64encode(bytes(der)).decode()


def _expired_token(authority, token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
                  exp=int(time.time()) - 3600)
    key = serialization.load_pem_private_key(
        (authority.data_dir / "signing-key.pem").read_bytes(), password=None)
    return jwt.encode(claims, key, algorithm="RS256",
                      headers={"kid": jwt.get_unverified_header(token)["kid"]})


def _forged_token(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256",
                      headers={"kid": jwt.get_unverified_header(token)["kid"]})


@pytest.mark.parametrize(("case", "status", "error_type", "says"), [
    ("no token", 401, "AuthenticationError", "Bearer"),
    ("expired token", 401, "AuthenticationError", "expired"),
    ("wrong audience", 401, "AuthenticationError", "aud must be"),
    ("forged token", 401, "AuthenticationError", "not a valid token"),
    ("1024-bit CSR", 400, "InvalidParameter", "2048"),
    ("bad CSR signature", 400, "InvalidParameter", "signature"),
    ("not a CSR", 400, "InvalidParameter", "PKCS#10"),
    ("wrong CertificateRequest type", 400, "InvalidParameter", "pkcs10"),
    ("bad TransportKey", 400, "InvalidParameter", "TransportKey"),
    ("1024-bit TransportKey", 400, "InvalidParameter", "TransportKey"),
    ("malformed JSON", 400, "InvalidParameter", "not JSON"),
    ("JSON array", 400, "InvalidParameter", "object"),
    ("missing DeviceType", 400, "InvalidParameter", "DeviceType"),
    ("JoinType not a number", 400, "InvalidParameter", "JoinType"),
])
def test_join_refusals_answer_error_details_and_record_nothing(
        authority, token, case, status, error_type, says):
    bearer: str | None = token
    body: object = join_body()
    raw = None
    if case == "no token":
        bearer = None
    elif case == "expired token":
        bearer = _expired_token(authority, token)
    elif case == "wrong audience":
        bearer = drs_token(authority, GRAPH)
    elif case == "forged token":
        bearer = _forged_token(token)
    elif case == "1024-bit CSR":
        body = join_body(CertificateRequest={"Type": "pkcs10", "Data": _csr(1024)})
    elif case == "bad CSR signature":
        body = join_body(CertificateRequest={"Type": "pkcs10", "Data": _csr(tamper=True)})
    elif case == "not a CSR":
        body = join_body(CertificateRequest={"Type": "pkcs10", "Data": "AAAA"})
    elif case == "wrong CertificateRequest type":
        body = join_body(CertificateRequest={"Type": "x509", "Data": _csr()})
    elif case == "bad TransportKey":
        body = join_body(TransportKey="bm90IGEga2V5")
    elif case == "1024-bit TransportKey":
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        n = small.public_numbers().n.to_bytes(128, "big")
        blob = struct.pack("<4sIIIII", b"RSA1", 1024, 3, 128, 0, 0) + b"\x01\x00\x01" + n
        body = join_body(TransportKey=base64.b64encode(blob).decode())
    elif case == "malformed JSON":
        raw = b'{"CertificateRequest": '
    elif case == "JSON array":
        body = [join_body()]
    elif case == "missing DeviceType":
        body = {k: v for k, v in join_body().items() if k != "DeviceType"}
    elif case == "JoinType not a number":
        body = join_body(JoinType=[4])
    before = devices_file(authority)
    answer = post_join(authority, bearer, body, raw=raw)
    assert answer.status_code == status, answer.text
    details = answer.json()
    assert set(details) == {"ErrorType", "Message", "TraceId", "Time"}
    assert details["ErrorType"] == error_type
    assert says in details["Message"]
    assert dt.datetime.fromisoformat(details["Time"].replace("Z", "+00:00"))
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    if bearer is not None:
        assert bearer not in answer.text  # the token is never echoed
    assert devices_file(authority) == before


def test_a_personal_account_may_not_register(authority):
    from fixtures.authority import browser_sign_in, msal_app

    app = msal_app(authority.authority, "common")
    result = browser_sign_in(app, [f"{DRS_APP_ID}/.default"], response_mode="form_post",
                             username="personal@outlook.example")
    assert "access_token" in result, result.get("error_description")
    answer = post_join(authority, result["access_token"], join_body())
    assert answer.status_code == 403 and answer.json()["ErrorType"] == "AuthorizationError"
