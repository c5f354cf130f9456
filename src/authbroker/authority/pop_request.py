"""The token request's PoP parameters: ``token_type=pop`` with ``req_cnf`` (base64url JSON
``{"kid": <key thumbprint>, ...}``), read before any code or refresh token is spent.

``token_type`` absent or ``bearer`` (any case) is a bearer request; ``pop`` needs ``req_cnf``;
any other value is refused, and so is ``req_cnf`` without ``token_type=pop``. Members of
``req_cnf`` other than ``kid`` (MSAL sends ``"xms_ksl": "sw"``) are accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from authbroker.authority import errors

MAX_REQ_CNF = 4096
MAX_KID = 128
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _kid_of(raw: str) -> str:
    if len(raw) > MAX_REQ_CNF or not _B64URL.fullmatch(raw):
        raise errors.invalid_request_parameter("req_cnf", "it is not base64url")
    unpadded = raw.rstrip("=")
    try:
        decoded = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
        value = json.loads(decoded.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise errors.invalid_request_parameter(
            "req_cnf", "it is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise errors.invalid_request_parameter("req_cnf", "it must be a JSON object")
    kid = value.get("kid")
    if not isinstance(kid, str) or not kid.strip():
        raise errors.invalid_request_parameter("req_cnf", "it must name a key as a string 'kid'")
    if len(kid) > MAX_KID or not kid.isprintable() or not kid.isascii():
        raise errors.invalid_request_parameter(
            "req_cnf", f"its 'kid' must be printable ASCII of at most {MAX_KID} characters")
    return kid


def requested_cnf(form: dict[str, str]) -> str | None:
    """The key id a PoP token must be bound to, or None for a bearer request."""
    token_type = form.get("token_type")
    raw = form.get("req_cnf")
    if token_type is None or token_type.lower() == "bearer":
        if raw is not None:
            raise errors.invalid_request_parameter(
                "req_cnf", "it is only accepted with token_type=pop")
        return None
    if token_type.lower() != "pop":
        raise errors.invalid_request_parameter(
            "token_type", f"'{token_type[:40]}' is not supported; use 'pop' or 'Bearer'")
    if not raw:
        raise errors.missing_parameter("req_cnf")
    return _kid_of(raw)
