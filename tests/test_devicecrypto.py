"""authbroker.devicecrypto: key blobs, CSR, the SP 800-108 KDF, session/device JWTs and JWEs."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import struct

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from authbroker import devicecrypto as dc

SESSION_KEY = bytes(range(32))
CTX = bytes(range(24))
PAYLOAD = b'{"refresh_token":"x","request_nonce":"n"}'
V1 = "70296b4334bf08f7bc6953575e6b6c18959dbcad6adb263fb625939d099456b3"
V2 = "e229b3c71e799dd0bcf4284957df08f48abbce3c71f8ee95d572a272ea0baa06"
PREFIX = "UlNBMQAIAAADAAAAAAEAAAAAAAAAAAAAAQAB"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return dc.new_rsa_key()


@pytest.fixture(scope="module")
def cert_der(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "0b6a4c1e-device")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --- BCRYPT_RSAKEY_BLOB ------------------------------------------------------------------------

def test_blob_round_trip_and_exact_header(key: rsa.RSAPrivateKey) -> None:
    blob = dc.rsakey_blob(key.public_key())
    assert len(blob) == 283
    assert blob[:24] == (b"RSA1" + bytes.fromhex("00080000" "03000000" "00010000")
                         + bytes(8))
    assert blob[24:27] == b"\x01\x00\x01"
    assert blob[27:] == key.public_key().public_numbers().n.to_bytes(256, "big")
    assert dc.transport_key_text(key.public_key()).startswith(PREFIX)
    back = dc.parse_rsakey_blob(blob)
    assert back.public_numbers() == key.public_key().public_numbers()
    parsed = dc.parse_transport_key(dc.transport_key_text(key.public_key()))
    assert parsed.public_numbers() == key.public_key().public_numbers()


def test_transport_key_accepts_a_jwk(key: rsa.RSAPrivateKey) -> None:
    numbers = key.public_key().public_numbers()
    jwk = json.dumps({"kty": "RSA", "n": _b64url(numbers.n.to_bytes(256, "big")),
                      "e": _b64url(b"\x01\x00\x01")})
    assert dc.parse_transport_key(jwk).public_numbers() == numbers
    wrapped = base64.b64encode(jwk.encode()).decode()
    assert dc.parse_transport_key(wrapped).public_numbers() == numbers


def _blob_with(blob: bytes, **fields: int) -> bytes:
    magic, bits, cb_exp, cb_mod, p1, p2 = struct.unpack_from("<4sIIIII", blob)
    values = dict(bits=bits, cb_exp=cb_exp, cb_mod=cb_mod, p1=p1, p2=p2) | fields
    return struct.pack("<4sIIIII", magic, values["bits"], values["cb_exp"], values["cb_mod"],
                       values["p1"], values["p2"]) + blob[24:]


def test_blob_parser_rejects_bad_input(key: rsa.RSAPrivateKey) -> None:
    blob = dc.rsakey_blob(key.public_key())
    with pytest.raises(dc.DeviceCryptoError, match="magic"):
        dc.parse_rsakey_blob(b"RSA2" + blob[4:])
    with pytest.raises(dc.DeviceCryptoError, match="primes"):
        dc.parse_rsakey_blob(_blob_with(blob, p1=128) + bytes(128))
    with pytest.raises(dc.DeviceCryptoError, match="shorter"):
        dc.parse_rsakey_blob(blob[:20])
    with pytest.raises(dc.DeviceCryptoError, match="length"):
        dc.parse_rsakey_blob(blob[:-1])
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(dc.DeviceCryptoError, match="RSA-2048"):
        dc.parse_rsakey_blob(dc.rsakey_blob(small.public_key()))
    with pytest.raises(dc.DeviceCryptoError):
        dc.parse_transport_key("not base64 at all!")
    assert issubclass(dc.DeviceCryptoError, ValueError)


def test_csr_verifies_with_a_2048_bit_key(key: rsa.RSAPrivateKey) -> None:
    csr = x509.load_der_x509_csr(dc.csr_der(key))
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), rsa.RSAPublicKey)
    assert csr.public_key().key_size == 2048
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == "sha256"
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == dc.CSR_SUBJECT_CN


# --- the KDF -----------------------------------------------------------------------------------

def _kbkdf(context: bytes, label: bytes = b"AzureAD-SecureConversation") -> bytes:
    return KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=32, rlen=4,
                     llen=4, location=CounterLocation.BeforeFixed, label=label,
                     context=context, fixed=None).derive(SESSION_KEY)


def _plain(context: bytes, label: bytes = b"AzureAD-SecureConversation",
           bits: int = 256) -> bytes:
    fixed = b"\x00\x00\x00\x01" + label + b"\x00" + context + bits.to_bytes(4, "big")
    return hmac.new(SESSION_KEY, fixed, hashlib.sha256).digest()


def test_kdf_vectors_three_ways() -> None:
    v2_context = hashlib.sha256(CTX + PAYLOAD).digest()
    assert dc.derive_key(SESSION_KEY, CTX).hex() == V1
    assert _kbkdf(CTX).hex() == V1 == _plain(CTX).hex()
    assert dc.derive_key(SESSION_KEY, CTX, PAYLOAD).hex() == V2
    assert _kbkdf(v2_context).hex() == V2 == _plain(v2_context).hex()
    assert dc.LABEL == b"AzureAD-SecureConversation"


def test_kdf_constants_matter() -> None:
    assert _plain(CTX, label=b"AzureAD-SecureConversatio").hex() != V1
    assert _plain(CTX, bits=128).hex() != V1
    assert _kbkdf(CTX, label=b"AzureAD-Secureconversation").hex() != V1
    assert dc.derive_key(SESSION_KEY, CTX, PAYLOAD + b" ").hex() != V2
    assert len(dc.new_ctx()) == 24 and dc.new_ctx() != dc.new_ctx()


# --- session_key_jwe ----------------------------------------------------------------------------

def test_wrap_unwrap_session_key(key: rsa.RSAPrivateKey) -> None:
    session_key = os.urandom(32)
    jwe = dc.wrap_session_key(session_key, key.public_key())
    parts = jwe.split(".")
    assert len(parts) == 5
    assert json.loads(dc.b64_any_decode(parts[0])) == {"enc": "A256GCM", "alg": "RSA-OAEP"}
    assert len(dc.b64_any_decode(parts[1])) == 256
    assert dc.unwrap_session_key(jwe, key) == session_key
    with pytest.raises(dc.DeviceCryptoError, match="transport key"):
        dc.unwrap_session_key(jwe, dc.new_rsa_key())


def test_unwrap_refuses_oaep_sha256(key: rsa.RSAPrivateKey) -> None:
    sha256 = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA256()),
                               algorithm=hashes.SHA256(), label=None)
    header = _b64url(b'{"enc":"A256GCM","alg":"RSA-OAEP"}')
    encrypted = key.public_key().encrypt(os.urandom(32), sha256)
    jwe = ".".join([header, _b64url(encrypted), _b64url(os.urandom(12)), "", ""])
    with pytest.raises(dc.DeviceCryptoError, match="OAEP"):
        dc.unwrap_session_key(jwe, key)


# --- encrypted responses -----------------------------------------------------------------------

BODY = {"access_token": "at", "refresh_token": "rt", "expires_in": "3599"}


def test_response_gcm_round_trip_and_tamper() -> None:
    session_key = os.urandom(32)
    text = dc.encrypt_response(BODY, session_key)
    header_seg, key_seg, iv_seg, _, _ = text.split(".")
    header = json.loads(dc.b64_any_decode(header_seg))
    assert header["alg"] == "dir" and header["enc"] == "A256GCM"
    assert header["kid"] == "session" and len(base64.b64decode(header["ctx"])) == 24
    assert key_seg == "" and len(dc.b64_any_decode(iv_seg)) == 12
    assert dc.decrypt_response(text, session_key) == BODY
    forged = _b64url(json.dumps(header | {"kid": "other"}).encode())
    with pytest.raises(dc.DeviceCryptoError, match="GCM"):
        dc.decrypt_response(".".join([forged] + text.split(".")[1:]), session_key)
    with pytest.raises(dc.DeviceCryptoError, match="GCM"):
        dc.decrypt_response(text, os.urandom(32))


def test_response_cbc_variant_and_plain_json() -> None:
    session_key, ctx, iv = os.urandom(32), os.urandom(24), os.urandom(16)
    header = _b64url(json.dumps({"alg": "dir", "enc": "A256GCM",
                                 "ctx": base64.b64encode(ctx).decode()}).encode())
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(BODY).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(dc.derive_key(session_key, ctx)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    text = ".".join([header, "", _b64url(iv), _b64url(ciphertext), ""])
    assert dc.decrypt_response(text, session_key) == BODY
    with pytest.raises(dc.DeviceCryptoError):
        dc.decrypt_response(text, os.urandom(32))
    assert dc.decrypt_response(json.dumps(BODY), session_key) == BODY


# --- session JWTs ------------------------------------------------------------------------------

CLAIMS = {"client_id": "c", "grant_type": "refresh_token", "refresh_token": "prt",
          "request_nonce": "n"}


@pytest.mark.parametrize("kdf_v2", [True, False])
def test_session_jwt_sign_verify(kdf_v2: bool) -> None:
    session_key = os.urandom(32)
    token = dc.sign_session_jwt(CLAIMS, session_key, kdf_v2=kdf_v2, ctx=CTX)
    parsed = dc.read_session_jwt(token)
    assert parsed.kdf_v2 is kdf_v2 and parsed.ctx == CTX
    assert parsed.header["alg"] == "HS256"
    assert parsed.header["ctx"] == base64.b64encode(CTX).decode()
    assert ("kdf_ver" in parsed.header) is kdf_v2
    assert parsed.claims == CLAIMS
    assert dc.verify_session_jwt(parsed, session_key) == CLAIMS
    with pytest.raises(dc.DeviceCryptoError, match="signature"):
        dc.verify_session_jwt(parsed, os.urandom(32))
    assert "prt" not in repr(parsed)


def test_session_jwt_by_hand_matches_the_derived_key() -> None:
    token = dc.sign_session_jwt(CLAIMS, SESSION_KEY, kdf_v2=True, ctx=CTX)
    header_seg, payload_seg, signature_seg = token.split(".")
    payload = dc.b64_any_decode(payload_seg)
    key = _plain(hashlib.sha256(CTX + payload).digest())
    expected = hmac.new(key, f"{header_seg}.{payload_seg}".encode(), hashlib.sha256).digest()
    assert dc.b64_any_decode(signature_seg) == expected


def test_session_jwt_payload_changed_after_signing_fails_under_v2() -> None:
    session_key = os.urandom(32)
    token = dc.sign_session_jwt(CLAIMS, session_key, kdf_v2=True)
    header_seg, _, signature_seg = token.split(".")
    altered = _b64url(json.dumps(CLAIMS | {"client_id": "other"}).encode())
    parsed = dc.read_session_jwt(".".join([header_seg, altered, signature_seg]))
    with pytest.raises(dc.DeviceCryptoError, match="signature"):
        dc.verify_session_jwt(parsed, session_key)


def test_session_jwt_parse_errors() -> None:
    token = dc.sign_session_jwt(CLAIMS, SESSION_KEY)
    with pytest.raises(dc.DeviceCryptoError, match="parts"):
        dc.read_session_jwt(token + ".x")
    no_ctx = _b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + token.split(".", 1)[1]
    with pytest.raises(dc.DeviceCryptoError, match="ctx"):
        dc.read_session_jwt(no_ctx)
    rs = _b64url(b'{"alg":"RS256","ctx":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"}')
    with pytest.raises(dc.DeviceCryptoError, match="HS256"):
        dc.read_session_jwt(rs + "." + token.split(".", 1)[1])


# --- device JWTs -------------------------------------------------------------------------------

def test_device_jwt_sign_read_verify(key: rsa.RSAPrivateKey, cert_der: bytes) -> None:
    claims = {"client_id": "c", "request_nonce": "n", "scope": "openid aza"}
    token = dc.sign_device_jwt(claims, key, cert_der)
    header, read_claims, cert = dc.read_device_jwt(token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert header["x5c"] == [base64.b64encode(cert_der).decode()]
    assert read_claims == claims
    assert dc.verify_device_jwt(token, cert) == claims
    other = dc.sign_device_jwt(claims, dc.new_rsa_key(), cert_der)
    with pytest.raises(dc.DeviceCryptoError, match="signature"):
        dc.verify_device_jwt(other, cert)


def test_device_jwt_x5c_as_a_bare_string(key: rsa.RSAPrivateKey, cert_der: bytes) -> None:
    claims = {"client_id": "c", "iat": "1764770000"}
    token = jwt.encode(claims, key, algorithm="RS256",
                       headers={"x5c": base64.b64encode(cert_der).decode(), "kdf_ver": 2})
    header, read_claims, cert = dc.read_device_jwt(token)
    assert cert.public_bytes(Encoding.DER) == cert_der
    assert dc.verify_device_jwt(token, cert) == claims
    bare = jwt.encode(claims, key, algorithm="RS256")
    with pytest.raises(dc.DeviceCryptoError, match="x5c"):
        dc.read_device_jwt(bare)


def test_errors_never_carry_secret_bytes(key: rsa.RSAPrivateKey) -> None:
    secret = "c2VjcmV0LXJlZnJlc2gtdG9rZW4"
    for call in (lambda: dc.read_session_jwt(secret), lambda: dc.decrypt_response(secret, b"k"),
                 lambda: dc.unwrap_session_key(secret, key),
                 lambda: dc.read_device_jwt(secret + ".x.y")):
        with pytest.raises(dc.DeviceCryptoError) as caught:
            call()
        assert secret not in str(caught.value)
        assert caught.value.__cause__ is None
