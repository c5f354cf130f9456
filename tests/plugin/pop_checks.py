"""Checking a Signed HTTP Request the way the tests do it, independently of the demo resource:
PyJWT and cryptography, the SHR's own cnf.jwk, and the RFC 7638 thumbprint computed here."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlparse

import jwt
import requests

from authbroker.plugin.challenge import pop_nonce


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 by hand (not authbroker.shr): the required members, sorted, no whitespace."""
    canonical = json.dumps({"e": jwk["e"], "kty": jwk["kty"], "n": jwk["n"]},
                           separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_shr(token: str, *, method: str, url: str, nonce: str) -> dict[str, Any]:
    """The SHR's payload, after checking its signature with its cnf.jwk, the binding of its
    key to the inner access token (cnf.kid), its request fields and a fresh ts."""
    unverified = jwt.decode(token, options={"verify_signature": False})
    jwk = unverified["cnf"]["jwk"]
    key = jwt.PyJWK.from_dict({**jwk, "alg": "RS256"})
    payload = jwt.decode(token, key.key, algorithms=["RS256"])
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "pop" and header["kid"] == thumbprint(jwk)
    at = jwt.decode(payload["at"], options={"verify_signature": False})
    assert at["cnf"]["kid"] == thumbprint(jwk)
    parsed = urlparse(url)
    assert (payload["m"], payload["u"], payload["p"]) == (method, parsed.netloc, parsed.path)
    assert payload["nonce"] == nonce
    assert abs(payload["ts"] - time.time()) < 10
    return payload


def challenge(url: str, method: str = "GET") -> str:
    """A fresh nonce from the resource's 401 challenge."""
    answer = requests.request(method, url, timeout=10)
    assert answer.status_code == 401
    nonce = pop_nonce(answer.headers.get("WWW-Authenticate"))
    assert nonce
    return nonce


def call(url: str, shr: str, method: str = "GET") -> requests.Response:
    return requests.request(method, url, headers={"Authorization": f"PoP {shr}"}, timeout=10)
