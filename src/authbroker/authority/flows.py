"""In-memory state of the grants: pending sign-ins, browser sessions, authorization codes,
device codes and refresh-token chains (rotation with reuse detection).

A chain is every refresh token descended from one sign-in; replaying a used one revokes the
chain. A family refresh token (issued to a FOCI member) may be redeemed by any family member:
the new token joins the same chain, issued to the client that redeemed it.

Everything lives in memory by design: a restarted authority forgets sessions and refresh tokens,
and clients sign in again (see docs/decisions.md). Secrets are kept only as SHA-256 digests.
The server runs on one event loop, so no locking is needed.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from authbroker.authority import errors
from authbroker.authority.directory import User

T = TypeVar("T")

TRANSACTION_LIFETIME = 1800
SESSION_LIFETIME = 24 * 3600
REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ" + string.digits  # no vowels: no words


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


class ExpiringStore(Generic[T]):
    """A dict of (expiry, value) that drops expired entries as it goes."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, T]] = {}
        self._puts = 0

    def put(self, key: str, value: T, lifetime: float) -> None:
        self._items[key] = (time.monotonic() + lifetime, value)
        self._puts += 1
        if self._puts % 256 == 0:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] > now}

    def get(self, key: str) -> T | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._items.pop(key, None)
            return None
        return entry[1]

    def get_even_expired(self, key: str) -> tuple[T, bool] | None:
        """The value and whether it is still live (to tell 'expired' from 'unknown')."""
        entry = self._items.get(key)
        if entry is None:
            return None
        return entry[1], entry[0] > time.monotonic()

    def pop(self, key: str) -> T | None:
        entry = self._items.pop(key, None)
        return entry[1] if entry else None


@dataclass
class Transaction:
    """An authorize request waiting for the person at the sign-in page."""

    params: dict[str, str]
    tenant_segment: str
    passthrough: bool


@dataclass
class Session:
    """A browser session (cookie): who signed in here and when."""

    accounts: dict[str, int] = field(default_factory=dict)  # username -> auth_time


@dataclass
class CodeRecord:
    client_id: str
    redirect_uri: str
    code_challenge: str
    user: User
    scope: str
    nonce: str | None
    auth_time: int
    claims: dict[str, Any]
    redeemed: bool = False
    chain: str | None = None
    expires_at: float = 0.0
    amr: tuple[str, ...] = ("pwd",)  # a sign-in by PRT credential keeps the PRT's
    device_id: str | None = None  # signed in with a device's PRT credential


@dataclass
class DeviceRecord:
    client_id: str
    user_code: str
    scope: str
    claims: dict[str, Any]
    tenant_segment: str
    user: User | None = None
    auth_time: int = 0
    redeemed: bool = False


@dataclass
class RefreshRecord:
    chain: str
    client_id: str
    user: User
    scope: str
    auth_time: int
    family: bool = False  # a family refresh token (issued to a FOCI member)
    used: bool = False


class Flows:
    def __init__(self, code_lifetime: int = 300, device_code_lifetime: int = 900) -> None:
        self.code_lifetime = code_lifetime
        self.device_code_lifetime = device_code_lifetime
        self.transactions: ExpiringStore[Transaction] = ExpiringStore()
        self.sessions: ExpiringStore[Session] = ExpiringStore()
        self._codes: ExpiringStore[CodeRecord] = ExpiringStore()
        self._devices: ExpiringStore[DeviceRecord] = ExpiringStore()
        self._user_codes: ExpiringStore[str] = ExpiringStore()  # user code -> device digest
        self._refresh: ExpiringStore[RefreshRecord] = ExpiringStore()
        self._revoked_chains: set[str] = set()

    # -- pending sign-ins and sessions ---------------------------------------------------------
    def begin(self, tx: Transaction) -> str:
        tx_id = new_secret(18)
        self.transactions.put(tx_id, tx, TRANSACTION_LIFETIME)
        return tx_id

    def session(self, session_id: str | None) -> Session | None:
        return self.sessions.get(digest(session_id)) if session_id else None

    def remember(self, session_id: str | None, user: User, auth_time: int) -> str:
        """Add the user to the browser session; returns the new cookie value (the session id
        changes at every sign-in, so a planted cookie never becomes a signed-in one)."""
        old = self.sessions.pop(digest(session_id)) if session_id else None
        session = Session(dict(old.accounts) if old else {})
        session.accounts[user.username] = auth_time
        new_id = new_secret()
        self.sessions.put(digest(new_id), session, SESSION_LIFETIME)
        return new_id

    # -- authorization codes ---------------------------------------------------------------------
    def issue_code(self, record: CodeRecord) -> str:
        code = new_secret(48)
        # Kept past expiry (x4) so a late or repeated redemption gets a precise error.
        self._codes.put(digest(code), record, self.code_lifetime * 4)
        record.expires_at = time.monotonic() + self.code_lifetime
        return code

    def redeem_code(self, code: str, client_id: str) -> CodeRecord:
        record = self._codes.get(digest(code))
        if record is None:
            raise errors.invalid_code()
        if record.redeemed:
            if record.chain:
                self._revoked_chains.add(record.chain)
            raise errors.code_redeemed()
        if record.expires_at <= time.monotonic():
            raise errors.code_expired()
        if record.client_id != client_id:
            raise errors.client_mismatch()
        record.redeemed = True
        return record

    # -- device codes ----------------------------------------------------------------------------
    def issue_device_code(self, record: DeviceRecord) -> str:
        device_code = new_secret(48)
        key = digest(device_code)
        self._devices.put(key, record, self.device_code_lifetime)
        self._user_codes.put(record.user_code, key, self.device_code_lifetime)
        return device_code

    def new_user_code(self) -> str:
        return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(9))

    def pending_device(self, user_code: str) -> DeviceRecord | None:
        key = self._user_codes.get(user_code.strip().upper().replace("-", ""))
        record = self._devices.get(key) if key else None
        return record if record and record.user is None else None

    def poll_device(self, device_code: str, client_id: str) -> DeviceRecord:
        found = self._devices.get_even_expired(digest(device_code))
        if found is None:
            raise errors.invalid_device_code()
        record, live = found
        if not live:
            raise errors.device_code_expired()
        if record.client_id != client_id:
            raise errors.client_mismatch()
        if record.redeemed:
            raise errors.invalid_device_code()
        if record.user is None:
            raise errors.authorization_pending()
        record.redeemed = True
        return record

    # -- refresh tokens --------------------------------------------------------------------------
    def issue_refresh(self, record: RefreshRecord) -> str:
        token = new_secret(64)
        self._refresh.put(digest(token), record, REFRESH_TOKEN_LIFETIME)
        return token

    def new_chain(self) -> str:
        return new_secret(12)

    def peek_refresh(self, token: str) -> RefreshRecord | None:
        """The live record of a refresh token, without spending it (checks before a grant)."""
        return self._refresh.get(digest(token))

    def redeem_refresh(self, token: str, client_id: str, *, family_member: bool,
                       spend: bool = True) -> RefreshRecord:
        """Spend a refresh token. ``family_member``: whether ``client_id`` is in the family, so
        that it may redeem a family refresh token issued to another member. ``spend=False``
        checks it the same way and leaves it usable (a PRT request answers with a PRT, not
        with a new refresh token for the client, so the client keeps its own)."""
        record = self._refresh.get(digest(token))
        if record is None:
            raise errors.refresh_token_invalid()
        if record.chain in self._revoked_chains:
            raise errors.refresh_token_revoked()
        if record.used:
            self._revoked_chains.add(record.chain)
            raise errors.refresh_token_reused()
        if record.client_id != client_id and not (record.family and family_member):
            raise errors.refresh_token_other_client()
        record.used = record.used or spend
        return record
