"""Device-identity cryptography: key blobs, the CSR, the session-key KDF, session/device JWTs, JWEs.

What [MS-DVRJ] and [MS-OAPXBC] need on both sides (``docs/device-identity.md`` §1.2, §2.2–2.6,
§4.3): the join's ``TransportKey`` (a ``BCRYPT_RSAKEY_BLOB``, or a JWK on the server side) and
PKCS#10 request; the session key (RSA-OAEP-SHA-1 JWE to the transport key) and the SP 800-108
keys derived from it (label ``AzureAD-SecureConversation``; context ``ctx`` for KDFv1,
``SHA-256(ctx || payload)`` for KDFv2); HS256 session JWTs (built by hand: KDFv2 needs the exact
payload bytes); ``dir``/``A256GCM`` response JWEs (Entra's CBC variant and plain JSON are read
too); RS256 device JWTs with ``x5c``. Pure functions, no I/O; every failure raises
:class:`DeviceCryptoError`, whose message names why and never carries key or token bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

LABEL = b"AzureAD-SecureConversation"
CSR_SUBJECT_CN = "7E980AD9-B86D-4306-9425-9AC066FB014A"
KEY_BITS = 2048
SESSION_KEY_BYTES = 32
CTX_BYTES = 24
CTX_RANGE = (16, 64)
BLOB_MAGIC = b"RSA1"
_BLOB_HEADER = struct.Struct("<4sIIIII")
_OAEP = asym_padding.OAEP(mgf=asym_padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                          label=None)
_WRAP_HEADER = {"enc": "A256GCM", "alg": "RSA-OAEP"}


class DeviceCryptoError(ValueError):
    """A device-crypto input is malformed or does not verify (the message says which)."""


# --- encodings -------------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64std(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64_any_decode(text: str) -> bytes:
    """Bytes from standard or url-safe base64, padding optional."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DeviceCryptoError("not valid base64") from None


def _json_bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise DeviceCryptoError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise DeviceCryptoError(f"{what} is not a JSON object")
    return value


def _segment_object(segment: str, what: str) -> dict[str, Any]:
    return _json_object(b64_any_decode(segment), what)


def _parts(token: str, count: int, what: str) -> list[str]:
    parts = token.strip().split(".")
    if len(parts) != count:
        raise DeviceCryptoError(f"{what} must have {count} dot-separated parts")
    return parts


# --- keys: the RSA key, BCRYPT_RSAKEY_BLOB, the CSR --------------------------------------------

def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (e = 65537): the device key or the transport key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def rsakey_blob(pub: rsa.RSAPublicKey) -> bytes:
    """The public key as a BCRYPT_RSAKEY_BLOB (``RSA1`` magic; 283 bytes for RSA-2048)."""
    numbers = pub.public_numbers()
    exponent = _int_bytes(numbers.e)
    modulus = numbers.n.to_bytes((pub.key_size + 7) // 8, "big")
    header = _BLOB_HEADER.pack(BLOB_MAGIC, pub.key_size, len(exponent), len(modulus), 0, 0)
    return header + exponent + modulus


def parse_rsakey_blob(data: bytes) -> rsa.RSAPublicKey:
    """An RSA-2048 public key back from a BCRYPT_RSAKEY_BLOB (public blob: no primes)."""
    if len(data) < _BLOB_HEADER.size:
        raise DeviceCryptoError("key blob shorter than its header")
    magic, bits, cb_exp, cb_mod, cb_p1, cb_p2 = _BLOB_HEADER.unpack_from(data)
    if magic != BLOB_MAGIC:
        raise DeviceCryptoError("key blob magic is not RSA1 (an RSA public blob)")
    if cb_p1 or cb_p2:
        raise DeviceCryptoError("key blob carries primes; a public blob must not")
    if len(data) != _BLOB_HEADER.size + cb_exp + cb_mod:
        raise DeviceCryptoError("key blob length does not match its header")
    if bits != KEY_BITS or cb_mod * 8 != bits or cb_exp == 0:
        raise DeviceCryptoError(f"key blob is not an RSA-{KEY_BITS} key")
    start = _BLOB_HEADER.size
    e = int.from_bytes(data[start:start + cb_exp], "big")
    n = int.from_bytes(data[start + cb_exp:], "big")
    return _public_key(e, n)


def _public_key(e: int, n: int) -> rsa.RSAPublicKey:
    if n.bit_length() != KEY_BITS:
        raise DeviceCryptoError(f"transport key is not an RSA-{KEY_BITS} key")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise DeviceCryptoError("transport key numbers are not a valid RSA key") from None


def transport_key_text(pub: rsa.RSAPublicKey) -> str:
    """The join's ``TransportKey``: standard base64 of the BCRYPT_RSAKEY_BLOB."""
    return _b64std(rsakey_blob(pub))


def _jwk_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n_text, e_text = jwk.get("n"), jwk.get("e")
    if jwk.get("kty") != "RSA" or not isinstance(n_text, str) or not isinstance(e_text, str):
        raise DeviceCryptoError("transport key JWK needs kty RSA, n and e")
    n = int.from_bytes(b64_any_decode(n_text), "big")
    return _public_key(int.from_bytes(b64_any_decode(e_text), "big"), n)


def parse_transport_key(text: str) -> rsa.RSAPublicKey:
    """The join's ``TransportKey``: a b64 BCRYPT blob, or a JWK (JSON text or b64 of JSON)."""
    if not isinstance(text, str) or not text.strip():
        raise DeviceCryptoError("transport key is empty")
    if text.lstrip().startswith("{"):
        return _jwk_key(_json_object(text.encode("utf-8"), "transport key JWK"))
    data = b64_any_decode(text)
    if data.lstrip().startswith(b"{"):
        return _jwk_key(_json_object(data, "transport key JWK"))
    return parse_rsakey_blob(data)


def csr_der(key: rsa.RSAPrivateKey) -> bytes:
    """The join's PKCS#10 request (DER): CN = the fixed placeholder, signed SHA-256 with RSA."""
    if key.key_size != KEY_BITS:
        raise DeviceCryptoError(f"the device key must be RSA-{KEY_BITS}")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CSR_SUBJECT_CN)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.DER)


# --- the session key: KDF, wrapping ------------------------------------------------------------

def new_ctx() -> bytes:
    """A fresh KDF context (24 random bytes)."""
    return os.urandom(CTX_BYTES)


def derive_key(session_key: bytes, ctx: bytes, payload: bytes | None = None) -> bytes:
    """SP 800-108 counter/HMAC-SHA256 key: KDFv1 context = ctx; KDFv2 = SHA-256(ctx + payload)."""
    if not session_key:
        raise DeviceCryptoError("the session key is empty")
    context = ctx if payload is None else hashlib.sha256(ctx + payload).digest()
    kdf = KBKDFHMAC(algorithm=hashes.SHA256(), mode=Mode.CounterMode, length=32, rlen=4,
                    llen=4, location=CounterLocation.BeforeFixed, label=LABEL,
                    context=context, fixed=None)
    return kdf.derive(session_key)


def wrap_session_key(session_key: bytes, transport_pub: rsa.RSAPublicKey) -> str:
    """``session_key_jwe``: compact JWE, RSA-OAEP (SHA-1) key, A256GCM over b"" (header AAD)."""
    if len(session_key) != SESSION_KEY_BYTES:
        raise DeviceCryptoError(f"the session key must be {SESSION_KEY_BYTES} bytes")
    header = b64url(_json_bytes(_WRAP_HEADER))
    encrypted_key = transport_pub.encrypt(session_key, _OAEP)
    iv = os.urandom(12)
    tag = AESGCM(session_key).encrypt(iv, b"", header.encode("ascii"))
    return ".".join([header, b64url(encrypted_key), b64url(iv), "", b64url(tag)])


def unwrap_session_key(jwe: str, transport_key: rsa.RSAPrivateKey) -> bytes:
    """The 32-byte session key from ``session_key_jwe`` (only its encrypted-key part is used)."""
    header_seg, key_seg = _parts(jwe, 5, "session_key_jwe")[:2]
    header = _segment_object(header_seg, "session_key_jwe header")
    if header.get("alg") != "RSA-OAEP":
        raise DeviceCryptoError("session_key_jwe alg is not RSA-OAEP")
    try:
        session_key = transport_key.decrypt(b64_any_decode(key_seg), _OAEP)
    except ValueError:
        raise DeviceCryptoError(
            "session_key_jwe does not decrypt with the transport key (RSA-OAEP SHA-1)") from None
    if len(session_key) != SESSION_KEY_BYTES:
        raise DeviceCryptoError(f"the session key is not {SESSION_KEY_BYTES} bytes")
    return session_key


# --- session JWTs (HS256 with ctx) ---------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class SessionJwt:
    """A parsed, not yet verified, session-key-signed JWT (the PRT exchange, the SSO cookie)."""

    header: dict[str, Any]
    claims: dict[str, Any]
    ctx: bytes
    kdf_v2: bool
    signing_input: bytes
    signature: bytes

    @property
    def payload(self) -> bytes:
        """The exact payload bytes that were signed (KDFv2 hashes them)."""
        return b64_any_decode(self.signing_input.split(b".", 1)[1].decode("ascii"))


def _hs256(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def sign_session_jwt(claims: dict[str, Any], session_key: bytes, *, kdf_v2: bool = True,
                     ctx: bytes | None = None) -> str:
    """An HS256 JWT signed with a key derived from the session key (``ctx`` fresh unless given)."""
    ctx = new_ctx() if ctx is None else ctx
    header: dict[str, Any] = {"alg": "HS256", "typ": "JWT", "ctx": _b64std(ctx)}
    if kdf_v2:
        header["kdf_ver"] = 2
    payload = _json_bytes(claims)
    signing_input = f"{b64url(_json_bytes(header))}.{b64url(payload)}".encode("ascii")
    key = derive_key(session_key, ctx, payload if kdf_v2 else None)
    return f"{signing_input.decode('ascii')}.{b64url(_hs256(key, signing_input))}"


def _kdf_v2(header: dict[str, Any]) -> bool:
    version = header.get("kdf_ver", 1)
    if version in (2, "2"):
        return True
    if version in (1, "1"):
        return False
    raise DeviceCryptoError("session JWT kdf_ver is neither 1 nor 2")


def _ctx_of(header: dict[str, Any], what: str) -> bytes:
    text = header.get("ctx")
    if not isinstance(text, str) or not text:
        raise DeviceCryptoError(f"{what} header has no ctx")
    ctx = b64_any_decode(text)
    if not CTX_RANGE[0] <= len(ctx) <= CTX_RANGE[1]:
        raise DeviceCryptoError(f"{what} ctx must be {CTX_RANGE[0]}-{CTX_RANGE[1]} bytes")
    return ctx


def read_session_jwt(token: str) -> SessionJwt:
    """Parse a session JWT WITHOUT verifying it (the server first finds the PRT's session key)."""
    header_seg, payload_seg, signature_seg = _parts(token, 3, "session JWT")
    header = _segment_object(header_seg, "session JWT header")
    if header.get("alg") != "HS256":
        raise DeviceCryptoError("session JWT alg is not HS256")
    ctx = _ctx_of(header, "session JWT")
    claims = _segment_object(payload_seg, "session JWT payload")
    return SessionJwt(header=header, claims=claims, ctx=ctx, kdf_v2=_kdf_v2(header),
                      signing_input=f"{header_seg}.{payload_seg}".encode("ascii"),
                      signature=b64_any_decode(signature_seg))


def verify_session_jwt(jwt: SessionJwt, session_key: bytes) -> dict[str, Any]:
    """The claims if the JWT is signed with this session key (constant-time check)."""
    key = derive_key(session_key, jwt.ctx, jwt.payload if jwt.kdf_v2 else None)
    if not hmac.compare_digest(_hs256(key, jwt.signing_input), jwt.signature):
        raise DeviceCryptoError("session JWT signature does not verify with the session key")
    return dict(jwt.claims)


# --- encrypted responses -----------------------------------------------------------------------

def encrypt_response(body: dict[str, Any], session_key: bytes) -> str:
    """A token response as compact JWE (``dir``/``A256GCM``, key from a fresh ctx, KDFv1)."""
    ctx = new_ctx()
    header = b64url(_json_bytes({"alg": "dir", "enc": "A256GCM", "ctx": _b64std(ctx),
                                 "kid": "session"}))
    iv = os.urandom(12)
    sealed = AESGCM(derive_key(session_key, ctx)).encrypt(iv, _json_bytes(body),
                                                           header.encode("ascii"))
    return ".".join([header, "", b64url(iv), b64url(sealed[:-16]), b64url(sealed[-16:])])


def _cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    try:
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise DeviceCryptoError("response does not decrypt (AES-CBC padding)") from None


def decrypt_response(text: str, session_key: bytes) -> dict[str, Any]:
    """The token response: a GCM JWE (12-byte IV), Entra's CBC variant (16 B IV), or plain JSON."""
    if text.lstrip().startswith("{"):
        return _json_object(text.encode("utf-8"), "response")
    header_seg, _, iv_seg, ct_seg, tag_seg = _parts(text, 5, "response JWE")
    header = _segment_object(header_seg, "response JWE header")
    key = derive_key(session_key, _ctx_of(header, "response JWE"))
    iv, ciphertext = b64_any_decode(iv_seg), b64_any_decode(ct_seg)
    if len(iv) == 12:
        try:
            plain = AESGCM(key).decrypt(iv, ciphertext + b64_any_decode(tag_seg),
                                        header_seg.encode("ascii"))
        except InvalidTag:
            raise DeviceCryptoError("response JWE does not decrypt (GCM tag mismatch)") from None
    elif len(iv) == 16:
        plain = _cbc_decrypt(key, iv, ciphertext)
    else:
        raise DeviceCryptoError("response JWE IV is neither 12 (GCM) nor 16 (CBC) bytes")
    return _json_object(plain, "decrypted response")


# --- device JWTs (RS256, x5c) ------------------------------------------------------------------

def sign_device_jwt(claims: dict[str, Any], device_key: rsa.RSAPrivateKey,
                    cert_der: bytes) -> str:
    """The PRT request JWT: RS256 with the device key, ``x5c`` = [the device certificate]."""
    return jwt.encode(claims, device_key, algorithm="RS256",
                      headers={"typ": "JWT", "alg": "RS256", "x5c": [_b64std(cert_der)]})


def read_device_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], x509.Certificate]:
    """Header, claims and the ``x5c`` certificate, unverified (x5c an array or a bare string)."""
    header_seg, payload_seg, _ = _parts(token, 3, "device JWT")
    header = _segment_object(header_seg, "device JWT header")
    if header.get("alg") != "RS256":
        raise DeviceCryptoError("device JWT alg is not RS256")
    x5c = header.get("x5c")
    first = x5c[0] if isinstance(x5c, list) and x5c else x5c
    if not isinstance(first, str) or not first:
        raise DeviceCryptoError("device JWT header has no x5c certificate")
    try:
        cert = x509.load_der_x509_certificate(b64_any_decode(first))
    except ValueError:
        raise DeviceCryptoError("device JWT x5c is not a DER certificate") from None
    return header, _segment_object(payload_seg, "device JWT payload"), cert


def verify_device_jwt(token: str, cert: x509.Certificate) -> dict[str, Any]:
    """The claims if the JWT's RS256 signature verifies with the certificate's key."""
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise DeviceCryptoError("the device certificate's key is not RSA")
    try:
        payload = jwt.PyJWS().decode(token, public, algorithms=["RS256"])
    except jwt.InvalidTokenError:
        raise DeviceCryptoError("device JWT signature does not verify with the device "
                                "certificate") from None
    return _json_object(payload, "device JWT payload")
