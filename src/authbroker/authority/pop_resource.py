"""The PoP-protected demo resource (``/resource/pop`` and every path under it): it checks a
Signed HTTP Request the way a real resource does and answers 200 with who called.

Without ``Authorization: PoP <shr>``, or with one that fails a check, it answers 401 with
``WWW-Authenticate: PoP nonce="<fresh nonce>"`` and ``{"error", "error_description"}`` (the
description names the failed check, never a token). The checks, in order:

1. the scheme is ``PoP`` (a ``Bearer`` token is refused) and the value is a JWS with header
   ``alg`` RS256 and ``typ`` pop;
2. the SHR's signature verifies with its own ``cnf.jwk`` (an RSA key of >= 2048 bits) and its
   header ``kid``, when present, is that key's RFC 7638 thumbprint;
3. ``at`` is a JWS signed by this authority (a key of its JWKS), not expired, whose ``aud`` is
   :data:`~authbroker.authority.scopes.POP_RESOURCE`, issued by this authority for a tenant it
   serves, and it carries ``cnf.kid``, which equals the thumbprint of the SHR's ``cnf.jwk``;
4. ``ts`` is within :data:`MAX_SKEW` seconds of now;
5. ``m``, ``u`` and ``p`` equal the request's method, ``Host`` header and path (no query);
6. ``nonce`` is one this resource issued and still valid (:mod:`authbroker.authority.nonces`).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker import shr
from authbroker.authority.directory import CONSUMER_TENANT_ID
from authbroker.authority.scopes import POP_RESOURCE
from authbroker.authority.state import AuthorityState, authority_of

log = logging.getLogger(__name__)

POP_RESOURCE_PATH = "/resource/pop"
MAX_SKEW = 300
MAX_AUTHORIZATION = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class Refused(Exception):
    """Why a request is refused; the text names the failed check and never holds a token."""

    def __init__(self, reason: str, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def _shr_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise Refused("no Authorization header: send 'Authorization: PoP <signed HTTP "
                      "request>' carrying the nonce of this challenge", "invalid_request")
    if len(header) > MAX_AUTHORIZATION:
        raise Refused("the Authorization header is too long")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        raise Refused("bearer tokens are not accepted here: this resource takes PoP tokens "
                      "only ('Authorization: PoP <signed HTTP request>')")
    if scheme.lower() != "pop" or not value.strip():
        raise Refused("the Authorization scheme must be PoP with a signed HTTP request")
    return value.strip()


def _verified_shr(token: str) -> tuple[dict[str, Any], str]:
    """The SHR's payload, its signature checked against its own cnf.jwk; and that thumbprint."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise Refused("the PoP token is not a signed HTTP request (not a JWS)") from None
    if header.get("alg") != shr.ALGORITHM or header.get("typ") != shr.TYPE:
        raise Refused("the PoP token is not a signed HTTP request (its header must say "
                      "alg RS256 and typ pop)")
    cnf = unverified.get("cnf")
    jwk = cnf.get("jwk") if isinstance(cnf, dict) else None
    if not isinstance(jwk, dict):
        raise Refused("the signed HTTP request carries no cnf.jwk")
    try:
        thumbprint = shr.thumbprint(jwk)
        key = jwt.PyJWK(jwk, algorithm=shr.ALGORITHM).key
    except (ValueError, jwt.PyJWKError, jwt.InvalidKeyError):
        raise Refused("the signed HTTP request's cnf.jwk is not an RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < shr.KEY_SIZE:
        raise Refused(f"the signed HTTP request's key must be RSA of >= {shr.KEY_SIZE} bits")
    if "kid" in header and not _same(header["kid"], thumbprint):
        raise Refused("the signed HTTP request's header kid is not its key's thumbprint")
    try:
        # Every claim is checked by hand (an SHR has no exp/aud); PyJWT checks the signature.
        payload = jwt.decode(token, key, algorithms=[shr.ALGORITHM], options={
            "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            "verify_aud": False, "verify_iss": False})
    except jwt.InvalidTokenError:
        raise Refused("the signed HTTP request's signature does not verify with its "
                      "cnf.jwk") from None
    return payload, thumbprint


def _verified_at(st: AuthorityState, at: object) -> dict[str, Any]:
    """The access token's claims: signed by this authority, for this resource, not expired."""
    if not isinstance(at, str) or not at:
        raise Refused("the signed HTTP request carries no access token (at)")
    try:
        kid = jwt.get_unverified_header(at).get("kid")
        key = jwt.PyJWKSet.from_dict(st.minter.key.jwks())[str(kid)].key
    except (jwt.InvalidTokenError, jwt.PyJWKSetError, KeyError):
        raise Refused("the access token is not signed by this authority") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            at, key, algorithms=["RS256"], audience=POP_RESOURCE,
            options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"]},
        )
    except jwt.ExpiredSignatureError:
        raise Refused("the access token has expired") from None
    except jwt.InvalidAudienceError:
        raise Refused(f"the access token is not for this resource (aud must be "
                      f"{POP_RESOURCE})") from None
    except jwt.InvalidSignatureError:
        raise Refused("the access token is not signed by this authority") from None
    except jwt.InvalidTokenError as exc:
        raise Refused(f"the access token is not valid ({type(exc).__name__})") from None
    tid = str(claims["tid"])
    if (tid not in (st.directory.tenant_id, CONSUMER_TENANT_ID)
            or claims["iss"] != st.minter.issuer(st.base_url, tid)):
        raise Refused("the access token was not issued by this authority")
    return claims


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def _check_binding(request: web.Request, payload: dict[str, Any], now: float) -> None:
    ts = payload.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise Refused("the signed HTTP request has no ts (unix seconds)")
    if abs(now - ts) > MAX_SKEW:
        raise Refused(f"the signed HTTP request's ts is more than {MAX_SKEW} s from now")
    if payload.get("m") != request.method:
        raise Refused("the signed HTTP request's m (method) does not match the request")
    host = payload.get("u")
    if not isinstance(host, str) or host.lower() != request.headers.get("Host", "").lower():
        raise Refused("the signed HTTP request's u (host) does not match the request")
    if payload.get("p") != request.rel_url.raw_path:
        raise Refused("the signed HTTP request's p (path) does not match the request")


def verify(st: AuthorityState, request: web.Request, now: float | None = None) -> dict[str, Any]:
    """The claims of the access token in a request's valid SHR, or :class:`Refused`."""
    now = time.time() if now is None else now
    payload, thumbprint = _verified_shr(_shr_of(request))
    claims = _verified_at(st, payload.get("at"))
    cnf = claims.get("cnf")
    kid = cnf.get("kid") if isinstance(cnf, dict) else None
    if not isinstance(kid, str) or not kid:
        raise Refused("the access token is not bound to a key (no cnf.kid): it is a bearer "
                      "token")
    if not _same(kid, thumbprint):
        raise Refused("the signed HTTP request is not signed with the key the access token "
                      "is bound to (cnf.kid is not the thumbprint of cnf.jwk)")
    _check_binding(request, payload, now)
    why = st.nonces.check(payload.get("nonce"), now)
    if why is not None:
        raise Refused(why)
    return claims


def _challenge(st: AuthorityState, refused: Refused) -> web.Response:
    headers = {**_NO_STORE, "WWW-Authenticate": f'PoP nonce="{st.nonces.issue()}"'}
    return web.json_response({"error": refused.error, "error_description": refused.reason},
                             status=401, headers=headers)


async def resource(request: web.Request) -> web.Response:
    """Any method on ``/resource/pop[/...]``: 200 with the caller, or a 401 PoP challenge."""
    st = authority_of(request)
    try:
        claims = verify(st, request)
    except Refused as refused:
        log.info("PoP resource refused %s %s: %s", request.method, request.path[:200],
                 refused.reason)
        return _challenge(st, refused)
    client_id = claims.get("azp") or claims.get("appid")
    return web.json_response({
        "name": claims.get("name"),
        "preferred_username": claims.get("preferred_username"),
        "oid": claims.get("oid"),
        "tid": claims.get("tid"),
        "appid": client_id,
        "azp": client_id,
        "scp": claims.get("scp"),
        "token_type": "pop",
        "method": request.method,
        "path": request.rel_url.raw_path,
    }, headers=_NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", POP_RESOURCE_PATH, resource)
    app.router.add_route("*", POP_RESOURCE_PATH + "/{tail:.*}", resource)
