"""The Broker1 results, one frozen type per reply shape (``to_wire``/``from_wire``).

Results are produced strictly; ``expiresOn`` is epoch *milliseconds* on the wire, seconds
(float) in Python; a token never appears in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authbroker.broker1.fields import read_int as _int
from authbroker.broker1.fields import read_obj as _obj
from authbroker.broker1.fields import read_str as _str
from authbroker.broker1.messages import Account, DeviceCodePrompt, redact
from authbroker.broker1.names import BROKER_VERSION, AccessTokenType
from authbroker.errors import BrokerProtocolError


def _token_type(value: int) -> AccessTokenType:
    try:
        return AccessTokenType(value)
    except ValueError:
        raise BrokerProtocolError(f"unknown accessTokenType {value}") from None


@dataclass(frozen=True)
class TokenResult:
    access_token: str = field(repr=False)
    id_token: str = field(repr=False)
    client_info: str
    expires_on: float  # epoch seconds
    extended_expires_on: float = 0.0
    granted_scopes: tuple[str, ...] = ()
    account: Account | None = None
    access_token_type: AccessTokenType = AccessTokenType.BEARER

    def __repr__(self) -> str:
        return (
            f"TokenResult(access_token={redact(self.access_token)}, "
            f"expires_on={self.expires_on:.0f}, scopes={list(self.granted_scopes)}, "
            f"account={self.account.username if self.account else None!r}, "
            f"type={self.access_token_type.name})"
        )

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "accessToken": self.access_token,
            "accessTokenType": int(self.access_token_type),
            "clientInfo": self.client_info,
            "idToken": self.id_token,
            "expiresOn": int(self.expires_on * 1000),
            "extendedExpiresOn": int((self.extended_expires_on or self.expires_on) * 1000),
        }
        if self.granted_scopes:
            body["grantedScopes"] = " ".join(self.granted_scopes)
        if self.account:
            body["account"] = self.account.to_wire()
        return {"brokerTokenResponse": body}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> TokenResult:
        body = _obj(obj, "brokerTokenResponse")
        if body is None:
            raise BrokerProtocolError("response has no brokerTokenResponse")
        access_token = _str(body, "accessToken", required=True)
        expires_ms = _int(body, "expiresOn")
        if expires_ms is None:
            raise BrokerProtocolError("missing required field 'expiresOn'")
        scopes = body.get("grantedScopes") or ""
        account = body.get("account")
        return cls(
            access_token=access_token,
            id_token=_str(body, "idToken"),
            client_info=_str(body, "clientInfo"),
            expires_on=expires_ms / 1000.0,
            extended_expires_on=(_int(body, "extendedExpiresOn", 0) or 0) / 1000.0,
            granted_scopes=tuple(scopes.split()) if isinstance(scopes, str) else (),
            account=Account.from_wire(account) if account else None,
            access_token_type=_token_type(_int(body, "accessTokenType", 0) or 0),
        )


@dataclass(frozen=True)
class SignedHttpRequestResult:
    """Reply of ``generateSignedHttpRequest``: a Signed HTTP Request without ``at``."""

    signed_http_request: str = field(repr=False)

    def __repr__(self) -> str:
        return f"SignedHttpRequestResult(signed_http_request={redact(self.signed_http_request)})"

    def to_wire(self) -> dict[str, Any]:
        return {"signedHttpRequest": self.signed_http_request}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> SignedHttpRequestResult:
        return cls(signed_http_request=_str(obj, "signedHttpRequest", required=True))


@dataclass(frozen=True)
class AccountsResult:
    accounts: tuple[Account, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"accounts": [a.to_wire() for a in self.accounts]}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> AccountsResult:
        raw = obj.get("accounts") or []
        if not isinstance(raw, list):
            raise BrokerProtocolError("accounts must be an array")
        return cls(accounts=tuple(Account.from_wire(a) for a in raw))


@dataclass(frozen=True)
class OkResult:
    """Reply of methods with nothing to say (``cancelInteractiveFlow``, ``removeAccount``)."""

    def to_wire(self) -> dict[str, Any]:
        return {"ok": True}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> OkResult:
        return cls()


@dataclass(frozen=True)
class DefaultAccountResult:
    """Reply of ``GetDefaultAccount``: the account ``account: null`` sign-ins use, if any."""

    account: Account | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"account": self.account.to_wire() if self.account else None}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> DefaultAccountResult:
        account = obj.get("account")
        return cls(account=Account.from_wire(account) if account is not None else None)


@dataclass(frozen=True)
class VersionResult:
    version: str = BROKER_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {"linuxBrokerVersion": self.version}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> VersionResult:
        return cls(version=_str(obj, "linuxBrokerVersion", required=True))


@dataclass(frozen=True)
class SignInStatus:
    """A running sign-in as ``GetStatus`` lists it: who asked, since when, and the device code
    a person must enter (while the device-code flow waits for it)."""

    correlation_id: str
    client_id: str
    sender: str  # the caller's unique bus name
    pid: int | None
    started_on: float  # epoch seconds
    device_code: DeviceCodePrompt | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "correlationId": self.correlation_id,
            "clientId": self.client_id,
            "caller": {"busName": self.sender, "pid": self.pid},
            "startedOn": int(self.started_on),
            "deviceCode": self.device_code.to_wire() if self.device_code else None,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> SignInStatus:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("a sign-in must be an object")
        caller = _obj(obj, "caller") or {}
        code = _obj(obj, "deviceCode")
        return cls(
            correlation_id=_str(obj, "correlationId"),
            client_id=_str(obj, "clientId"),
            sender=_str(caller, "busName"),
            pid=_int(caller, "pid"),
            started_on=float(_int(obj, "startedOn", 0) or 0),
            device_code=DeviceCodePrompt.from_wire(dict(code)) if code else None,
        )


@dataclass(frozen=True)
class CallerStatus:
    """A recent caller as ``GetStatus`` lists it (never anything from a request but client ids)."""

    sender: str  # its unique bus name
    pid: int | None
    executable: str
    client_ids: tuple[str, ...]
    calls: int
    last_method: str
    last_call_on: float  # epoch seconds

    def to_wire(self) -> dict[str, Any]:
        return {
            "busName": self.sender, "pid": self.pid, "executable": self.executable,
            "clientIds": list(self.client_ids), "calls": self.calls,
            "lastMethod": self.last_method, "lastCallOn": int(self.last_call_on),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> CallerStatus:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("a caller must be an object")
        ids = obj.get("clientIds") or []
        return cls(
            sender=_str(obj, "busName"), pid=_int(obj, "pid"), executable=_str(obj, "executable"),
            client_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
            calls=_int(obj, "calls", 0) or 0, last_method=_str(obj, "lastMethod"),
            last_call_on=float(_int(obj, "lastCallOn", 0) or 0),
        )


def _array(obj: Mapping[str, Any], key: str) -> list[Any]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise BrokerProtocolError(f"{key} must be an array")
    return value


@dataclass(frozen=True)
class StatusResult:
    """Reply of ``GetStatus``: the accounts (the default one's id apart), the running sign-ins
    and the recent callers."""

    accounts: tuple[Account, ...] = ()
    default_account_id: str | None = None
    sign_ins: tuple[SignInStatus, ...] = ()
    callers: tuple[CallerStatus, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "accounts": [a.to_wire() for a in self.accounts],
            "defaultHomeAccountId": self.default_account_id,
            "signIns": [s.to_wire() for s in self.sign_ins],
            "recentCallers": [c.to_wire() for c in self.callers],
        }

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> StatusResult:
        return cls(
            accounts=tuple(Account.from_wire(a) for a in _array(obj, "accounts")),
            default_account_id=_str(obj, "defaultHomeAccountId") or None,
            sign_ins=tuple(SignInStatus.from_wire(s) for s in _array(obj, "signIns")),
            callers=tuple(CallerStatus.from_wire(c) for c in _array(obj, "recentCallers")),
        )


@dataclass(frozen=True)
class DeviceStatus:
    """The registered device as ``GetDeviceStatus`` shows it: ids, certificate expiry, state
    and the PRT's state (``active``, ``none``, ``expired``, ``refused``, ``unavailable``);
    never key material."""

    device_id: str
    tenant_id: str
    authority: str
    state: str = "registered"  # registered | disabled | deleted | locked (keys unreadable)
    certificate_not_after: int = 0  # epoch seconds
    join_type: int = 4
    home_account_id: str = ""
    registered_at: int = 0
    prt: str = "none"
    prt_expires_on: int | None = None
    prt_renewed_at: int | None = None

    @property
    def usable(self) -> bool:
        """Registered, and its PRT not refused (``device status`` exits 0)."""
        return self.state == "registered" and self.prt not in ("refused", "")

    def to_wire(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id, "tenantId": self.tenant_id, "authority": self.authority,
            "joinType": self.join_type, "certificateNotAfter": self.certificate_not_after,
            "state": self.state, "homeAccountId": self.home_account_id,
            "registeredAt": self.registered_at, "prt": self.prt,
            "prtExpiresOn": self.prt_expires_on, "prtRenewedAt": self.prt_renewed_at,
        }

    @classmethod
    def from_wire(cls, obj: Any) -> DeviceStatus:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("a device must be an object")
        return cls(
            device_id=_str(obj, "deviceId", required=True), tenant_id=_str(obj, "tenantId"),
            authority=_str(obj, "authority"), state=_str(obj, "state", default="registered"),
            certificate_not_after=_int(obj, "certificateNotAfter", 0) or 0,
            join_type=_int(obj, "joinType", 4) or 0,
            home_account_id=_str(obj, "homeAccountId"),
            registered_at=_int(obj, "registeredAt", 0) or 0,
            prt=_str(obj, "prt", default="none"),
            prt_expires_on=_int(obj, "prtExpiresOn"),
            prt_renewed_at=_int(obj, "prtRenewedAt"),
        )


@dataclass(frozen=True)
class DeviceStatusResult:
    """Reply of ``RegisterDevice`` and ``GetDeviceStatus``: the device, or None (not
    registered)."""

    device: DeviceStatus | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"device": self.device.to_wire() if self.device else None}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> DeviceStatusResult:
        device = obj.get("device")
        return cls(device=DeviceStatus.from_wire(device) if device is not None else None)


@dataclass(frozen=True)
class UnregisterDeviceResult:
    """Reply of ``UnregisterDevice``: whether the authority deleted the device, and if not
    why (``localOnly``, unreachable, refused, nothing registered)."""

    deleted_at_authority: bool = False
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"deletedAtAuthority": self.deleted_at_authority}
        if self.reason:
            wire["reason"] = self.reason
        return wire

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> UnregisterDeviceResult:
        deleted = obj.get("deletedAtAuthority")
        if not isinstance(deleted, bool):
            raise BrokerProtocolError("field 'deletedAtAuthority' must be true or false")
        return cls(deleted_at_authority=deleted, reason=_str(obj, "reason"))


@dataclass(frozen=True)
class PrtSsoCookieResult:
    """Reply of ``acquirePrtSsoCookie``, in both forms clients read: ``cookieName`` /
    ``cookieContent`` (older brokers, Himmelblau) and ``cookieItems`` (brokers after 2.0.1)."""

    account: Account | None
    cookie_name: str
    cookie_content: str = field(repr=False)

    def __repr__(self) -> str:
        return (f"PrtSsoCookieResult(cookie_name={self.cookie_name!r}, "
                f"cookie_content={redact(self.cookie_content)})")

    def to_wire(self) -> dict[str, Any]:
        item = {"cookieName": self.cookie_name, "cookieContent": self.cookie_content}
        return {"account": self.account.to_wire() if self.account else None, **item,
                "cookieItems": [item]}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> PrtSsoCookieResult:
        items = obj.get("cookieItems")
        source: Mapping[str, Any] = obj
        if not obj.get("cookieContent") and isinstance(items, list) and items \
                and isinstance(items[0], Mapping):
            source = items[0]
        account = obj.get("account")
        return cls(account=Account.from_wire(account) if account is not None else None,
                   cookie_name=_str(source, "cookieName", required=True),
                   cookie_content=_str(source, "cookieContent", required=True))


Result = (
    TokenResult | AccountsResult | OkResult | VersionResult | DefaultAccountResult | StatusResult
    | SignedHttpRequestResult | DeviceStatusResult | UnregisterDeviceResult
    | PrtSsoCookieResult
)
