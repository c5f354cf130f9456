"""The Signed HTTP Request format (``authbroker.shr``): RFC 7638 thumbprints (the RFC's own
§3.1 example), req_cnf, PEM round trips, and SHRs checked independently with PyJWT."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from authbroker import shr

#: RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
         "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR"
         "0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bF"
         "TWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def key():  # type: ignore[no-untyped-def]
    return shr.new_key()


def test_thumbprint_is_rfc7638s_example_and_ignores_optional_members() -> None:
    assert shr.thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    bare = {k: RFC7638_JWK[k] for k in ("kty", "n", "e")}
    assert shr.thumbprint(bare) == RFC7638_THUMBPRINT
    for broken in ({"kty": "EC", "n": "x", "e": "y"}, {"kty": "RSA", "n": "x"}):
        with pytest.raises(ValueError):
            shr.thumbprint(broken)


def test_public_jwk_matches_pyjwts_and_the_pem_round_trip(key) -> None:  # type: ignore[no-untyped-def]
    jwk = shr.public_jwk(key)
    assert set(jwk) == {"kty", "n", "e"} and jwk["e"] == "AQAB"
    theirs = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    assert (theirs["n"], theirs["e"]) == (jwk["n"], jwk["e"])
    assert key.key_size == shr.KEY_SIZE == 2048
    again = shr.key_from_pem(shr.key_to_pem(key))
    assert shr.public_jwk(again) == jwk
    with pytest.raises(ValueError):
        shr.key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_req_cnf_names_the_kid() -> None:
    encoded = shr.req_cnf(RFC7638_THUMBPRINT)
    assert "=" not in encoded
    decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert decoded == {"kid": RFC7638_THUMBPRINT, "xms_ksl": "sw"}


def test_sign_makes_a_jws_pyjwt_verifies_with_its_own_key(key) -> None:  # type: ignore[no-untyped-def]
    token = shr.sign(key, method="get", host="api.example:8443", path="/v1/items", at="a.b.c",
                     nonce="n1", client_claims='{"x":1}', ts=1_700_000_000)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": shr.thumbprint(shr.public_jwk(key)), "typ": "pop"}
    payload = jwt.decode(token, key.public_key(), algorithms=["RS256"])
    assert payload == {"at": "a.b.c", "ts": 1_700_000_000, "m": "GET", "u": "api.example:8443",
                       "p": "/v1/items", "nonce": "n1", "cnf": {"jwk": shr.public_jwk(key)},
                       "client_claims": '{"x":1}'}
    bare = jwt.decode(shr.sign(key, method="POST", host="h", path=""), key.public_key(),
                      algorithms=["RS256"])
    assert "at" not in bare and "nonce" not in bare and "client_claims" not in bare
    assert bare["p"] == "/"
    other = shr.new_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["RS256"])
