"""Primary Refresh Tokens at the authority: the records (persisted in ``prts.json``) and the
``srv_challenge`` nonces ([MS-OAPXBC] §3.2.5.1.1).

A PRT is an opaque random string; the store keeps only its SHA-256 digest, with the device it
is bound to, its user, the session key (the authority's own secret state, like its signing key:
stored in the 0600 file, never logged), the ``amr``/``auth_time`` of the original sign-in and
its lifetime. A renewal issues a new PRT with the same session key and shortens the old one's
life to a grace period (a client that lost the answer can still use it briefly).

PRT nonces use their own HMAC secret (not the PoP resource's), live 300 s and may serve several
grants in that time; for the SSO credential a nonce is single-use (:meth:`PrtNonces.consume`).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from authbroker.authority.flows import digest, new_secret
from authbroker.authority.nonces import Nonces
from authbroker.files import write_private_atomic

log = logging.getLogger(__name__)

PRT_LIFETIME = 14 * 24 * 3600
RENEWAL_GRACE = 60
PRT_NONCE_LIFETIME = 300
SEEN_NONCES_MAX = 100_000
STORE_NAME = "prts.json"


@dataclass(repr=False)
class PrtRecord:
    device_id: str
    username: str
    user_oid: str
    session_key: bytes
    amr: tuple[str, ...]
    auth_time: int
    issued: int = 0
    expires: int = 0
    previous: str | None = None  # digest of the PRT this one renewed

    def live(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.expires

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["session_key"] = base64.b64encode(self.session_key).decode("ascii")
        out["amr"] = list(self.amr)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrtRecord:
        return cls(
            device_id=str(data["device_id"]), username=str(data["username"]),
            user_oid=str(data["user_oid"]),
            session_key=base64.b64decode(str(data["session_key"])),
            amr=tuple(str(a) for a in data.get("amr", ["pwd"])),
            auth_time=int(data["auth_time"]), issued=int(data["issued"]),
            expires=int(data["expires"]), previous=data.get("previous"),
        )


class PrtStore:
    """PRT records by digest; with a ``path`` every change is written atomically."""

    def __init__(self, path: Path | None = None, *, lifetime: int = PRT_LIFETIME,
                 grace: int = RENEWAL_GRACE, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.lifetime = lifetime
        self.grace = grace
        self.clock = clock
        self._records: dict[str, PrtRecord] = {}
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            records = {str(k): PrtRecord.from_json(v) for k, v in data["prts"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable state: start empty (clients get 70008 and fetch a new PRT).
            log.warning("ignoring unreadable %s (%s)", path.name, type(exc).__name__)
            return
        now = self.clock()
        self._records = {k: r for k, r in records.items() if r.live(now)}

    def _save(self) -> None:
        if self.path is None:
            return
        now = self.clock()
        self._records = {k: r for k, r in self._records.items() if r.live(now)}
        body = {"version": 1, "prts": {k: r.to_json() for k, r in self._records.items()}}
        write_private_atomic(self.path, json.dumps(body, sort_keys=True).encode())

    def issue(self, record: PrtRecord) -> str:
        """Store ``record`` (issued now, for the store's lifetime); returns the new PRT."""
        now = int(self.clock())
        record.issued, record.expires = now, now + self.lifetime
        token = "1." + new_secret(48)
        self._records[digest(token)] = record
        self._save()
        return token

    def lookup(self, token: str) -> PrtRecord | None:
        """The live record of ``token``, or None (unknown, expired, revoked)."""
        record = self._records.get(digest(token))
        if record is None or not record.live(self.clock()):
            return None
        return record

    def renew(self, token: str) -> str:
        """A new PRT with the same session key and original sign-in; the old one stays valid
        for the grace period only."""
        key = digest(token)
        old = self._records[key]
        now = int(self.clock())
        old.expires = min(old.expires, now + self.grace)
        return self.issue(replace(old, previous=key))

    def forget_device(self, device_id: str) -> int:
        """Drop every PRT of a device (deleted at the authority); how many were dropped."""
        before = len(self._records)
        self._records = {k: r for k, r in self._records.items() if r.device_id != device_id}
        dropped = before - len(self._records)
        if dropped:
            self._save()
        return dropped


@dataclass
class PrtNonces:
    """``srv_challenge`` nonces: a secret of their own, reusable for grants within their
    lifetime, single-use (a bounded seen-set) for SSO credentials."""

    lifetime: int = PRT_NONCE_LIFETIME
    nonces: Nonces = field(init=False)
    _seen: OrderedDict[str, float] = field(init=False, default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.nonces = Nonces(self.lifetime, secrets.token_bytes(32))

    def issue(self, now: float | None = None) -> str:
        return self.nonces.issue(now)

    def valid(self, nonce: object) -> bool:
        """Issued by this authority instance and still fresh (grants: may be reused)."""
        return self.nonces.check(nonce) is None

    def ours(self, nonce: object) -> bool:
        """Issued by this authority instance, fresh or not (the challenge loop guard)."""
        if not isinstance(nonce, str):
            return False
        reason = self.nonces.check(nonce, now=_issued_at(nonce))
        return reason is None

    def consume(self, nonce: object) -> bool:
        """Valid and never consumed before; marks it used (SSO credentials)."""
        if not self.valid(nonce):
            return False
        assert isinstance(nonce, str)
        now = time.time()
        while self._seen and (next(iter(self._seen.values())) <= now
                              or len(self._seen) >= SEEN_NONCES_MAX):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + self.lifetime
        return True


def _issued_at(nonce: str) -> float:
    """The issue time a nonce claims (0 when it cannot be read): lets :meth:`PrtNonces.ours`
    check the MAC without the freshness rule."""
    body = nonce.partition(".")[0]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        return 0.0
    return float(int.from_bytes(raw[:8], "big")) if len(raw) >= 8 else 0.0
