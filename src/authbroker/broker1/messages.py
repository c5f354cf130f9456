"""The Broker1 objects requests and results are made of: Account, PopParams, AuthParameters,
and the device-code prompt our signal carries.

All frozen, each with ``to_wire`` (strict: the shape pymsalruntime requires) and ``from_wire``
(tolerant: unknown fields ignored). Secrets never appear in a ``repr``. The requests are in
``broker1.requests``, the results in ``broker1.results``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authbroker import entra
from authbroker.broker1.fields import read_int as _int
from authbroker.broker1.fields import read_obj as _obj
from authbroker.broker1.fields import read_str as _str
from authbroker.broker1.names import (
    DEFAULT_ENVIRONMENT,
    NATIVE_CLIENT_REDIRECT_URI,
    AuthorizationType,
)
from authbroker.entra import encode_client_info
from authbroker.errors import BrokerProtocolError

__all__ = ["BEARER_SCHEME", "POP_SCHEME", "Account", "AuthParameters", "DeviceCodePrompt",
           "PopParams", "decode_client_info", "encode_client_info", "redact"]


def redact(value: str | None) -> str:
    """What a ``repr`` shows of a secret: its length only."""
    return "None" if value is None else f"<redacted {len(value)} chars>"


def decode_client_info(client_info: str) -> tuple[str, str]:
    """``(uid, utid)`` from a client_info blob; BrokerProtocolError when it is not one."""
    try:
        return entra.decode_client_info(client_info)
    except ValueError as exc:
        raise BrokerProtocolError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# shared objects


@dataclass(frozen=True)
class Account:
    home_account_id: str  # "<oid>.<tid>"
    local_account_id: str
    realm: str
    username: str
    environment: str = DEFAULT_ENVIRONMENT
    name: str = ""
    given_name: str = ""
    family_name: str = ""
    client_info: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "homeAccountId": self.home_account_id,
            "localAccountId": self.local_account_id,
            "realm": self.realm,
            "username": self.username,
            "environment": self.environment,
            "name": self.name,
            "givenName": self.given_name,
            "familyName": self.family_name,
            "passwordExpiry": 0,
        }
        if self.client_info:
            wire["clientInfo"] = self.client_info
        return wire

    @classmethod
    def from_wire(cls, obj: Any) -> Account:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("account must be an object")
        return cls(
            home_account_id=_str(obj, "homeAccountId", required=True),
            local_account_id=_str(obj, "localAccountId"),
            realm=_str(obj, "realm"),
            username=_str(obj, "username"),
            environment=_str(obj, "environment", default=DEFAULT_ENVIRONMENT),
            name=_str(obj, "name"),
            given_name=_str(obj, "givenName"),
            family_name=_str(obj, "familyName"),
            client_info=_str(obj, "clientInfo"),
        )


#: ``popParams.authenticationScheme`` values (pymsalruntime sends none: PoP).
POP_SCHEME = "pop"
BEARER_SCHEME = "bearer"


@dataclass(frozen=True)
class PopParams:
    """``popParams``: the HTTP request a PoP token is for (the Signed HTTP Request's ``m``,
    ``u``, ``p`` and ``nonce``), the account (``generateSignedHttpRequest``), and what other
    clients add: ``authenticationScheme`` and ``kid`` (a client-held key's id)."""

    http_method: str
    uri_host: str
    uri_path: str
    nonce: str = ""
    client_claims: str = ""
    home_account_id: str = ""
    authentication_scheme: str = "pop"
    kid: str = ""

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "httpMethod": self.http_method,
            "uriHost": self.uri_host,
            "uriPath": self.uri_path,
            "nonce": self.nonce,
            "clientClaims": self.client_claims,
            "homeAccountId": self.home_account_id,
            "authenticationScheme": self.authentication_scheme,
        }
        if self.kid:
            wire["kid"] = self.kid
        return wire

    @property
    def is_pop(self) -> bool:
        """Whether the scheme asks for a PoP token (``"pop"``, any case)."""
        return self.authentication_scheme.lower() == POP_SCHEME

    @property
    def is_bearer(self) -> bool:
        return self.authentication_scheme.lower() == BEARER_SCHEME

    @classmethod
    def from_wire(cls, obj: Any) -> PopParams:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("popParams must be an object")
        return cls(
            http_method=_str(obj, "httpMethod"),
            uri_host=_str(obj, "uriHost"),
            uri_path=_str(obj, "uriPath"),
            nonce=_str(obj, "nonce"),
            client_claims=_str(obj, "clientClaims"),
            home_account_id=_str(obj, "homeAccountId"),
            authentication_scheme=_str(obj, "authenticationScheme", default="pop") or "pop",
            kid=_str(obj, "kid"),
        )


@dataclass(frozen=True)
class AuthParameters:
    client_id: str
    requested_scopes: tuple[str, ...]
    authority: str = ""
    redirect_uri: str = NATIVE_CLIENT_REDIRECT_URI
    authorization_type: int = AuthorizationType.CACHED_REFRESH_TOKEN
    account: Account | None = None
    username: str = ""  # the account's UPN, or a login hint for interactive calls
    is_sign_in: bool = False
    decoded_claims: str = ""  # JSON text of a claims challenge / client capabilities, or ""
    pop_params: PopParams | None = None
    extra_query: Mapping[str, str] = field(default_factory=dict)
    parent_window: int | None = None
    prompt: str = ""  # sent by some clients (sso-mib, ours); pymsalruntime never sends it
    force_refresh: bool = False  # our clients only; pymsalruntime has no such flag
    access_token_to_renew: str = field(default="", repr=False)

    @property
    def login_hint(self) -> str:
        return self.username if not self.account else ""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "clientId": self.client_id,
            "authority": self.authority,
            "redirectUri": self.redirect_uri,
            "requestedScopes": list(self.requested_scopes),
            "authorizationType": int(self.authorization_type),
            "account": self.account.to_wire() if self.account else None,
            "username": self.username,
            "decodedClaims": self.decoded_claims,
            "popParams": self.pop_params.to_wire() if self.pop_params else None,
            "additionalQueryParametersForAuthorization": dict(self.extra_query),
            "accessTokenToRenew": self.access_token_to_renew,
            "enrollmentId": "",
            "password": "",
            "isTestMode": False,
            "uxContextHandle": -1,
        }
        if self.account is None or self.is_sign_in:
            wire["isSignIn"] = True
        if self.parent_window is not None:
            wire["parentWindow"] = {"handle": self.parent_window}
        if self.prompt:
            wire["prompt"] = self.prompt
        if self.force_refresh:
            wire["forceRefresh"] = True
        return wire

    @classmethod
    def from_wire(cls, obj: Any, *, top_level_account: Any = None) -> AuthParameters:
        if not isinstance(obj, Mapping):
            raise BrokerProtocolError("authParameters must be an object")
        scopes = obj.get("requestedScopes")
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise BrokerProtocolError("requestedScopes must be an array of strings")
        account_obj = obj.get("account") if obj.get("account") is not None else top_level_account
        account = Account.from_wire(account_obj) if account_obj is not None else None
        pop = _obj(obj, "popParams")
        extra = _obj(obj, "additionalQueryParametersForAuthorization") or {}
        window = _obj(obj, "parentWindow")
        claims = obj.get("decodedClaims") or ""
        if isinstance(claims, Mapping):
            claims = json.dumps(claims)
        if not isinstance(claims, str):
            raise BrokerProtocolError("decodedClaims must be a string")
        return cls(
            client_id=_str(obj, "clientId", required=True),
            requested_scopes=tuple(s for s in scopes if s),
            authority=_str(obj, "authority"),
            redirect_uri=_str(obj, "redirectUri", default=NATIVE_CLIENT_REDIRECT_URI),
            authorization_type=_int(obj, "authorizationType", 1) or 0,
            account=account,
            username=_str(obj, "username"),
            is_sign_in=bool(obj.get("isSignIn")),
            decoded_claims=claims,
            pop_params=PopParams.from_wire(pop) if pop is not None else None,
            extra_query={str(k): str(v) for k, v in extra.items()},
            parent_window=_int(window, "handle") if window else None,
            prompt=_str(obj, "prompt"),
            force_refresh=bool(obj.get("forceRefresh")),
            access_token_to_renew=_str(obj, "accessTokenToRenew"),
        )


@dataclass(frozen=True)
class DeviceCodePrompt:
    """What a person needs to finish a device-code sign-in (never a secret)."""

    verification_uri: str
    user_code: str
    message: str
    expires_on: float  # epoch seconds

    def to_wire(self) -> dict[str, Any]:
        return {
            "verificationUri": self.verification_uri,
            "userCode": self.user_code,
            "message": self.message,
            "expiresOn": int(self.expires_on),
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> DeviceCodePrompt:
        return cls(
            verification_uri=str(obj.get("verificationUri", "")),
            user_code=str(obj.get("userCode", "")),
            message=str(obj.get("message", "")),
            expires_on=float(obj.get("expiresOn", 0)),
        )
