"""The PoP demo resource's nonces: signed, short-lived, stateless (HMAC over the issue time).

A nonce is ``<body>.<mac>``: ``body`` = base64url(issue time, 8 bytes big-endian, + 8 random
bytes), ``mac`` = base64url(HMAC-SHA256(per-process secret, body)). A nonce is valid for
:data:`NONCE_LIFETIME` seconds after it was issued and may be used by several requests in that
time (an SHR is bound to one method, host and path by its own signature, not by the nonce). A
restarted authority has a new secret, so its old nonces are unknown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

from authbroker.shr import b64url

NONCE_LIFETIME = 300
_MAX_LENGTH = 128
_CLOCK_SKEW = 5  # a nonce "from the future" beyond this is forged


class Nonces:
    """Issues and checks nonces; :meth:`check` answers what is wrong, or None."""

    def __init__(self, lifetime: int = NONCE_LIFETIME, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret or secrets.token_bytes(32)

    def _mac(self, body: str) -> str:
        return b64url(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        body = b64url(issued.to_bytes(8, "big") + secrets.token_bytes(8))
        return f"{body}.{self._mac(body)}"

    def check(self, nonce: object, now: float | None = None) -> str | None:
        """None when ``nonce`` is one of ours and still valid, else why not (no secret in it)."""
        if not isinstance(nonce, str) or not nonce:
            return "the SHR carries no nonce"
        body, dot, mac = nonce.partition(".")
        if len(nonce) > _MAX_LENGTH or not dot or not body.isascii():
            return "the nonce was not issued by this resource"
        if not hmac.compare_digest(self._mac(body), mac):
            return "the nonce was not issued by this resource"
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return "the nonce was not issued by this resource"
        issued = int.from_bytes(raw[:8], "big")
        current = time.time() if now is None else now
        if issued > current + _CLOCK_SKEW:
            return "the nonce was not issued by this resource"
        if current - issued > self.lifetime:
            return "the nonce has expired; use the one in this challenge"
        return None
