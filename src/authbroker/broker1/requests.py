"""The Broker1 requests, one frozen type per request shape (``to_wire``/``from_wire``).

Requests are parsed tolerantly: unknown fields are ignored and ``account`` may sit at the top
level or inside ``authParameters``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


Request = (
    TokenRequest | GetAccountsRequest | RemoveAccountRequest | CancelRequest | OpaqueRequest
    | SetDefaultAccountRequest | SignedHttpRequestRequest
)


