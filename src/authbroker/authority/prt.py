"""[MS-OAPXBC] at the token endpoint: the nonce request, which jwt-bearer request a JWT is (PRT
request or PRT exchange), and the checks every request signed with a session key shares.

The grants themselves are :mod:`~authbroker.authority.prt_grant` (device-signed PRT request)
and :mod:`~authbroker.authority.prt_exchange` (PRT → tokens for any client, and renewal); the
records and nonces are :mod:`~authbroker.authority.prt_store`. ``authorize`` uses
:func:`session_request` for the ``x-ms-RefreshTokenCredential`` SSO credential.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from authbroker import devicecrypto
from authbroker.authority import errors
from authbroker.authority.devices import DeviceObject
from authbroker.authority.prt_store import PrtRecord
from authbroker.authority.scopes import ScopeRequest, parse_scopes
from authbroker.authority.state import AuthorityState

SRV_CHALLENGE = "srv_challenge"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Scopes of the PRT protocol itself, not of a resource: ``aza`` (asks for a PRT), ``ugs``
#: (Windows group SIDs, ignored).
PRT_SCOPES = frozenset({"aza", "ugs"})
#: ``iat``/``exp`` of a session-signed request may be this far off.
CLOCK_SKEW = 300
MAX_REQUEST_JWT = 64 * 1024


def srv_challenge(st: AuthorityState) -> dict[str, str]:
    """§3.2.5.1.1: a fresh nonce, no client authentication."""
    return {"Nonce": st.prt_nonces.issue()}


def request_kind(token: str) -> str:
    """``"prt"`` for a device-signed request (header ``x5c``), ``"exchange"`` for one signed
    with a session key (header ``ctx``); anything else is refused."""
    if not token or len(token) > MAX_REQUEST_JWT or token.count(".") != 2:
        raise errors.malformed_request("'request' must be a signed JWT")
    try:
        header = json.loads(devicecrypto.b64_any_decode(token.split(".", 1)[0]))
    except (ValueError, devicecrypto.DeviceCryptoError):
        raise errors.malformed_request("the header of 'request' is not base64url JSON") from None
    if not isinstance(header, dict):
        raise errors.malformed_request("the header of 'request' is not a JSON object")
    if "x5c" in header:
        return "prt"
    if "ctx" in header:
        return "exchange"
    raise errors.malformed_request(
        "'request' must carry 'x5c' (a PRT request) or 'ctx' (a PRT exchange) in its header")


def split_scopes(raw: str) -> tuple[ScopeRequest, bool]:
    """The resource scopes of a PRT request or exchange, and whether it asks for a PRT
    (``aza``)."""
    words = raw.split()
    renew = "aza" in words
    return parse_scopes(" ".join(w for w in words if w not in PRT_SCOPES)), renew


def nonce_checked(st: AuthorityState, claims: dict[str, Any]) -> None:
    """A grant's ``request_nonce``: ours and fresh (reusable within its lifetime)."""
    if not st.prt_nonces.valid(claims.get("request_nonce")):
        raise errors.request_nonce_invalid()


def claim_text(claims: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = claims.get(name)
    if value is None or value == "":
        if required:
            raise errors.missing_parameter(name)
        return ""
    if not isinstance(value, str):
        raise errors.malformed_request(f"the claim '{name}' must be a string")
    return value


def check_times(claims: dict[str, Any], now: float | None = None) -> None:
    """``iat``/``exp`` when present (numbers or numeric strings), with :data:`CLOCK_SKEW`."""
    current = time.time() if now is None else now
    for name in ("iat", "exp"):
        raw = claims.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise errors.malformed_request(f"the claim '{name}' is not a time") from None
        if name == "iat" and value > current + CLOCK_SKEW:
            raise errors.malformed_request("the request was issued in the future ('iat')")
        if name == "exp" and value < current - CLOCK_SKEW:
            raise errors.malformed_request("the request has expired ('exp')")


@dataclass(repr=False)
class SessionRequest:
    """A JWT whose HS256 signature verified with a live PRT's session key."""

    prt: str
    claims: dict[str, Any]
    record: PrtRecord
    device: DeviceObject


def session_request(st: AuthorityState, token: str) -> SessionRequest:
    """Find the PRT named in ``token``, verify the signature with its session key (KDF v1 or
    v2 as the header says), and check its device; the nonce is the caller's business.

    Raises EntraError: unknown/expired PRT 70008, bad signature 50006, deleted device 50155,
    disabled device 135011."""
    try:
        parsed = devicecrypto.read_session_jwt(token)
    except devicecrypto.DeviceCryptoError as exc:
        raise errors.malformed_request(f"the request JWT cannot be read ({exc})") from None
    prt = parsed.claims.get("refresh_token")
    record = st.prts.lookup(prt) if isinstance(prt, str) and prt else None
    if record is None or not isinstance(prt, str):
        raise errors.prt_invalid()
    try:
        claims = devicecrypto.verify_session_jwt(parsed, record.session_key)
    except devicecrypto.DeviceCryptoError:
        raise errors.session_signature_invalid() from None
    device = st.devices.require(record.device_id)  # 50155 deleted, 135011 disabled
    return SessionRequest(prt, claims, record, device)
