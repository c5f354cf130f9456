"""The Broker1 requests, one frozen type per request shape (``to_wire``/``from_wire``).

Requests are parsed tolerantly: unknown fields are ignored and ``account`` may sit at the top
level or inside ``authParameters``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authbroker.broker1.fields import read_bool as _bool
from authbroker.broker1.fields import read_int as _int
from authbroker.broker1.fields import read_obj as _obj
from authbroker.broker1.fields import read_str as _str
from authbroker.broker1.messages import Account, AuthParameters, PopParams
from authbroker.broker1.names import Status
from authbroker.errors import BrokerProtocolError, site_tag


@dataclass(frozen=True)
class TokenRequest:
    """``acquireTokenSilently`` / ``acquireTokenInteractively``."""

    auth: AuthParameters
    parent_window_handle: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"authParameters": self.auth.to_wire()}
        if self.parent_window_handle is not None:
            wire["parentWindowHandle"] = self.parent_window_handle
        return wire

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> TokenRequest:
        auth = AuthParameters.from_wire(
            obj.get("authParameters"), top_level_account=obj.get("account")
        )
        handle = _int(obj, "parentWindowHandle")
        return cls(auth=auth, parent_window_handle=handle if handle is not None else None)


@dataclass(frozen=True)
class GetAccountsRequest:
    client_id: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "redirectUri": self.client_id}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> GetAccountsRequest:
        return cls(client_id=_str(obj, "clientId"))


@dataclass(frozen=True)
class RemoveAccountRequest:
    account: Account
    client_id: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "account": self.account.to_wire()}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> RemoveAccountRequest:
        auth = _obj(obj, "authParameters") or {}
        account_obj = obj.get("account") if obj.get("account") is not None else auth.get("account")
        if account_obj is None:
            raise BrokerProtocolError("missing required field 'account'")
        client_id = _str(obj, "clientId") or _str(auth, "clientId")
        return cls(account=Account.from_wire(account_obj), client_id=client_id)


@dataclass(frozen=True)
class CancelRequest:
    """``cancelInteractiveFlow``: pymsalruntime sends an error object describing the cancel."""

    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "error": {
                "context": self.reason or "The interactive request was cancelled by the app",
                "diagnostics": None,
                "errorCode": 0,
                "status": int(Status.USER_CANCELED),
                "subStatus": 0,
                "tag": site_tag("client.cancel"),
            }
        }

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> CancelRequest:
        err = obj.get("error")
        reason = err.get("context", "") if isinstance(err, Mapping) else ""
        return cls(reason=reason if isinstance(reason, str) else "")


@dataclass(frozen=True)
class OpaqueRequest:
    """Methods whose request we only pass through (version, PRT cookie, signed HTTP request)."""

    body: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return dict(self.body)

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> OpaqueRequest:
        return cls(body=dict(obj))


@dataclass(frozen=True)
class SignedHttpRequestRequest:
    """``generateSignedHttpRequest``: ``{clientId, popParams}``, the account named by
    ``popParams.homeAccountId`` (sso-mib's shape)."""

    client_id: str
    pop_params: PopParams

    def to_wire(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "popParams": self.pop_params.to_wire()}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> SignedHttpRequestRequest:
        pop = obj.get("popParams")
        if pop is None:
            raise BrokerProtocolError("missing required field 'popParams'")
        return cls(client_id=_str(obj, "clientId"), pop_params=PopParams.from_wire(pop))


@dataclass(frozen=True)
class SetDefaultAccountRequest:
    """``SetDefaultAccount``: the account by ``homeAccountId`` or by ``username`` (either case)."""

    home_account_id: str = ""
    username: str = ""

    def to_wire(self) -> dict[str, Any]:
        if self.home_account_id:
            return {"homeAccountId": self.home_account_id}
        return {"username": self.username}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> SetDefaultAccountRequest:
        request = cls(home_account_id=_str(obj, "homeAccountId"), username=_str(obj, "username"))
        if not (request.home_account_id or request.username):
            raise BrokerProtocolError("give the account's 'homeAccountId' or 'username'")
        return request


@dataclass(frozen=True)
class RegisterDeviceRequest:
    """``RegisterDevice``: where to register (default: the broker's authority, the signed-in
    account's tenant), the device's display name, the sign-in's flow, the account to use."""

    authority: str = ""
    tenant: str = ""
    device_name: str = ""
    use_device_code: bool = False
    home_account_id: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"useDeviceCode": self.use_device_code}
        for key, value in (("authority", self.authority), ("tenant", self.tenant),
                           ("deviceName", self.device_name),
                           ("homeAccountId", self.home_account_id)):
            if value:
                wire[key] = value
        return wire

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> RegisterDeviceRequest:
        return cls(authority=_str(obj, "authority"), tenant=_str(obj, "tenant"),
                   device_name=_str(obj, "deviceName"),
                   use_device_code=_bool(obj, "useDeviceCode"),
                   home_account_id=_str(obj, "homeAccountId"))


@dataclass(frozen=True)
class UnregisterDeviceRequest:
    """``UnregisterDevice``: ``localOnly`` skips the deletion at the authority."""

    local_only: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"localOnly": self.local_only}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> UnregisterDeviceRequest:
        return cls(local_only=_bool(obj, "localOnly"))


@dataclass(frozen=True)
class PrtSsoCookieRequest:
    """``acquirePrtSsoCookie``: ``{account, authParameters (authorizationType 8, ssoUrl),
    ssoUrl, mamEnrollment}`` (sso-mib's shape); the account may sit in ``authParameters``, the
    URL too. Every field is optional here: the broker says what is missing."""

    account: Account | None = None
    sso_url: str = ""
    client_id: str = ""
    authority: str = ""
    mam_enrollment: bool = False

    def to_wire(self) -> dict[str, Any]:
        account = self.account.to_wire() if self.account else None
        return {"account": account, "ssoUrl": self.sso_url, "mamEnrollment": self.mam_enrollment,
                "authParameters": {"clientId": self.client_id, "authority": self.authority,
                                   "authorizationType": 8, "ssoUrl": self.sso_url,
                                   "requestedScopes": [], "account": account}}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> PrtSsoCookieRequest:
        auth = _obj(obj, "authParameters") or {}
        account_obj = obj.get("account") if obj.get("account") is not None else auth.get("account")
        return cls(account=Account.from_wire(account_obj) if account_obj is not None else None,
                   sso_url=_str(obj, "ssoUrl") or _str(auth, "ssoUrl"),
                   client_id=_str(auth, "clientId") or _str(obj, "clientId"),
                   authority=_str(auth, "authority"),
                   mam_enrollment=_bool(obj, "mamEnrollment"))


Request = (
    TokenRequest | GetAccountsRequest | RemoveAccountRequest | CancelRequest | OpaqueRequest
    | SetDefaultAccountRequest | SignedHttpRequestRequest | RegisterDeviceRequest
    | UnregisterDeviceRequest | PrtSsoCookieRequest
)


