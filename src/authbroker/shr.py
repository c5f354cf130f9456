"""Signed HTTP Requests (SHR), the PoP token format: keys, thumbprints, req_cnf, signing.

A PoP access token is bound to a key: the token request carries ``token_type=pop`` and
``req_cnf`` (base64url JSON ``{"kid": <thumbprint>, "xms_ksl": "sw"}``), the authority puts
``"cnf": {"kid": …}`` in the access token, and every request to the resource carries a fresh
JWS signed with that key (``Authorization: PoP <shr>``)::

    header  {"alg": "RS256", "kid": <thumbprint>, "typ": "pop"}
    payload {"at": <access token>, "ts": <unix seconds>, "m": <HTTP method>,
             "u": <host[:port]>, "p": <path>, "nonce": <resource nonce>,
             "cnf": {"jwk": <public JWK>}, "client_claims": <string, when given>}

``at`` is left out for ``generateSignedHttpRequest`` (a signed request without a token). Pure
functions, no I/O; the key is an ``RSAPrivateKey`` from ``cryptography``, kept sealed by whoever
owns it (never logged, never in an exception).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KEY_SIZE", "b64url", "key_from_pem", "key_to_pem", "new_key", "public_jwk",
           "req_cnf", "sign", "thumbprint"]

KEY_SIZE = 2048
ALGORITHM = "RS256"
TYPE = "pop"


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def new_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 PoP key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)


def key_to_pem(key: rsa.RSAPrivateKey) -> str:
    """The key as unencrypted PKCS#8 PEM (for a store that seals it)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def key_from_pem(pem: str) -> rsa.RSAPrivateKey:
    """The key back from :func:`key_to_pem`; ValueError if it is not an RSA private key."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def public_jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, str]:
    """The public half as a JWK (``kty``, ``n``, ``e``: the members RFC 7638 hashes)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of an RSA JWK (required members, sorted, no spaces)."""
    if jwk.get("kty") != "RSA" or not jwk.get("n") or not jwk.get("e"):
        raise ValueError("an RSA JWK needs kty, n and e")
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]},
                           separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def req_cnf(kid: str) -> str:
    """The ``req_cnf`` token-request parameter for a key id, as MSAL sends it."""
    body = json.dumps({"kid": kid, "xms_ksl": "sw"}, separators=(",", ":"))
    return b64url(body.encode("utf-8"))


def sign(
    key: rsa.RSAPrivateKey, *, method: str, host: str, path: str,
    at: str | None = None, nonce: str | None = None, client_claims: str | None = None,
    ts: int | None = None, jwk: Mapping[str, str] | None = None,
) -> str:
    """A Signed HTTP Request for one HTTP request (``at`` omitted: a request without a token).

    ``host`` is host[:port] as the resource sees it, ``path`` the path without the query;
    ``jwk`` is ``public_jwk(key)`` when the caller keeps it (saves recomputing it per call).
    """
    jwk = dict(jwk) if jwk is not None else public_jwk(key)
    payload: dict[str, Any] = {}
    if at is not None:
        payload["at"] = at
    payload.update({"ts": int(time.time()) if ts is None else int(ts), "m": method.upper(),
                    "u": host, "p": path or "/"})
    if nonce:
        payload["nonce"] = nonce
    payload["cnf"] = {"jwk": jwk}
    if client_claims:
        payload["client_claims"] = client_claims
    return jwt.encode(payload, key, algorithm=ALGORITHM,
                      headers={"kid": thumbprint(jwk), "typ": TYPE})
