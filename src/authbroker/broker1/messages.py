"""THE Broker1 wire schema: bus names, methods, status codes and typed request/response objects.

This is the only module that spells Broker1 strings. Everything else (daemon, clients, CLI,
plugin backends) works with the typed objects below and converts with ``to_wire``/``from_wire``.
See docs/ and ../shared/docs/broker1-protocol.md for the protocol itself.

Rules kept here:
- every method is ``(s protocol_version, s correlation_id, s request_json) -> s response_json``
  (our own ``UiMethod``s on ``UI_INTERFACE``: ``(s correlation_id, s request_json) -> s``);
- errors travel as JSON objects with ``status``, ``errorCode``, ``tag``, ``context`` and
  ``subStatus`` — inside ``brokerTokenResponse`` for token methods, at the top level otherwise;
- ``expiresOn`` is epoch *milliseconds* on the wire, seconds (float) in Python;
- requests are parsed tolerantly (unknown fields ignored, ``account`` at the top level or inside
  ``authParameters``), responses are produced strictly;
- tokens never appear in a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from authbroker.errors import BrokerProtocolError, BrokerStatusError, site_tag

BUS_NAME = "com.microsoft.identity.broker1"
OBJECT_PATH = "/com/microsoft/identity/broker1"
INTERFACE = "com.microsoft.identity.Broker1"
PEER_INTERFACE = "org.freedesktop.DBus.Peer"
INTROSPECTABLE_INTERFACE = "org.freedesktop.DBus.Introspectable"
#: Our own interface on the same object: UI prompts for clients that listen (authbroker's).
UI_INTERFACE = "io.authbroker.BrokerUi1"
DEVICE_CODE_SIGNAL = "DeviceCodePrompt"  # (s correlation_id, s prompt_json)
#: Methods of UI_INTERFACE, each ``(s correlation_id, s request_json) -> s``: see UiMethod.
SET_DEFAULT_ACCOUNT = "SetDefaultAccount"
GET_DEFAULT_ACCOUNT = "GetDefaultAccount"
PROTOCOL_VERSION = "0.0"
BROKER_VERSION = "2.0.4"  # what getLinuxBrokerVersion reports (compatible with known clients)
#: Requests larger than this (bytes of request_json) are refused with an error object.
MAX_REQUEST_BYTES = 256 * 1024
#: pymsalruntime gives up on any call after this many seconds.
CLIENT_CALL_TIMEOUT_S = 300.0

NATIVE_CLIENT_REDIRECT_URI = "https://login.microsoftonline.com/common/oauth2/nativeclient"
DEFAULT_ENVIRONMENT = "login.microsoftonline.com"


class Method(StrEnum):
    ACQUIRE_TOKEN_INTERACTIVELY = "acquireTokenInteractively"
    ACQUIRE_TOKEN_SILENTLY = "acquireTokenSilently"
    GET_ACCOUNTS = "getAccounts"
    REMOVE_ACCOUNT = "removeAccount"
    ACQUIRE_PRT_SSO_COOKIE = "acquirePrtSsoCookie"
    GENERATE_SIGNED_HTTP_REQUEST = "generateSignedHttpRequest"
    CANCEL_INTERACTIVE_FLOW = "cancelInteractiveFlow"
    GET_LINUX_BROKER_VERSION = "getLinuxBrokerVersion"

    @property
    def is_token_method(self) -> bool:
        return self in (Method.ACQUIRE_TOKEN_INTERACTIVELY, Method.ACQUIRE_TOKEN_SILENTLY)


class UiMethod(StrEnum):
    """Our own methods on ``UI_INTERFACE`` (not Broker1): ``(s correlation_id, s request_json)
    -> s response_json``; errors travel as a top-level ``error`` object, as in Broker1."""

    SET_DEFAULT_ACCOUNT = SET_DEFAULT_ACCOUNT
    GET_DEFAULT_ACCOUNT = GET_DEFAULT_ACCOUNT

    @property
    def is_token_method(self) -> bool:
        return False


AnyMethod = Method | UiMethod


class Status(IntEnum):
    """Broker status codes (the broker's numbering, as pymsalruntime maps them)."""

    UNEXPECTED = 0
    RESERVED = 1
    INTERACTION_REQUIRED = 2
    NO_NETWORK = 3
    NETWORK_TEMPORARILY_UNAVAILABLE = 4
    SERVER_TEMPORARILY_UNAVAILABLE = 5
    API_CONTRACT_VIOLATION = 6
    USER_CANCELED = 7
    APPLICATION_CANCELED = 8
    INCORRECT_CONFIGURATION = 9
    INSUFFICIENT_BUFFER = 10
    AUTHORITY_UNTRUSTED = 11
    # 12 (UserSwitch) is turned into a different error by pymsalruntime: never sent.
    ACCOUNT_UNUSABLE = 13
    USER_DATA_REMOVAL_REQUIRED = 14
    TRANSIENT_ERROR = 15
    ACCOUNT_SWITCH = 16
    DEVICE_NOT_REGISTERED = 17
    KEY_NOT_FOUND = 18
    ACCOUNT_NOT_FOUND = 19
    REQUIRED_BROKER_MISSING = 20
    FALLBACK_TO_NATIVE_MSAL = 21
    # 23 (MdmEnrollmentHandoff) makes pymsalruntime loop forever: it has no member on purpose.


class AuthorizationType(IntEnum):
    NONE = 0
    CACHED_REFRESH_TOKEN = 1
    IMPORTED_REFRESH_TOKEN = 2
    USERNAME_PASSWORD = 3
    WINDOWS_INTEGRATED = 4
    AUTH_CODE = 5
    INTERACTIVE = 6
    CERTIFICATE = 7
    PRT_SSO_COOKIE = 8


class AccessTokenType(IntEnum):
    BEARER = 0
    POP = 1


def _redact(value: str | None) -> str:
    return "None" if value is None else f"<redacted {len(value)} chars>"


# ---------------------------------------------------------------------------------------------
# shared objects


def _str(obj: Mapping[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise BrokerProtocolError(f"missing required field {key!r}")
        return default
    if not isinstance(value, str):
        raise BrokerProtocolError(f"field {key!r} must be a string, not {type(value).__name__}")
    if required and not value:
        raise BrokerProtocolError(f"field {key!r} must not be empty")
    return value


def _int(obj: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise BrokerProtocolError(f"field {key!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BrokerProtocolError(f"field {key!r} must be an integer")


def _obj(obj: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BrokerProtocolError(f"field {key!r} must be an object")
    return value


def encode_client_info(uid: str, utid: str) -> str:
    raw = json.dumps({"uid": uid, "utid": utid}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_client_info(client_info: str) -> tuple[str, str]:
    """``(uid, utid)`` from a client_info blob; BrokerProtocolError when it is not one."""
    try:
        padded = client_info + "=" * (-len(client_info) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        return str(data["uid"]), str(data["utid"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise BrokerProtocolError("clientInfo is not a base64url {uid, utid} object") from exc


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


@dataclass(frozen=True)
class PopParams:
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

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> PopParams:
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
            pop_params=PopParams.from_wire(pop) if pop else None,
            extra_query={str(k): str(v) for k, v in extra.items()},
            parent_window=_int(window, "handle") if window else None,
            prompt=_str(obj, "prompt"),
            force_refresh=bool(obj.get("forceRefresh")),
            access_token_to_renew=_str(obj, "accessTokenToRenew"),
        )


# ---------------------------------------------------------------------------------------------
# requests


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


Request = (
    TokenRequest | GetAccountsRequest | RemoveAccountRequest | CancelRequest | OpaqueRequest
    | SetDefaultAccountRequest
)

_REQUEST_TYPES: dict[AnyMethod, Any] = {
    Method.ACQUIRE_TOKEN_INTERACTIVELY: TokenRequest,
    Method.ACQUIRE_TOKEN_SILENTLY: TokenRequest,
    Method.GET_ACCOUNTS: GetAccountsRequest,
    Method.REMOVE_ACCOUNT: RemoveAccountRequest,
    Method.CANCEL_INTERACTIVE_FLOW: CancelRequest,
    Method.GET_LINUX_BROKER_VERSION: OpaqueRequest,
    Method.ACQUIRE_PRT_SSO_COOKIE: OpaqueRequest,
    Method.GENERATE_SIGNED_HTTP_REQUEST: OpaqueRequest,
    UiMethod.SET_DEFAULT_ACCOUNT: SetDefaultAccountRequest,
    UiMethod.GET_DEFAULT_ACCOUNT: OpaqueRequest,
}


def parse_request(method: AnyMethod, request_json: str) -> Request:
    """Parse ``request_json`` for ``method``; BrokerProtocolError (safe to log) if malformed."""
    if len(request_json.encode("utf-8", "surrogatepass")) > MAX_REQUEST_BYTES:
        raise BrokerProtocolError(f"request is larger than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = json.loads(request_json) if request_json.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise BrokerProtocolError("request is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise BrokerProtocolError("request must be a JSON object")
    return _REQUEST_TYPES[method].from_wire(obj)


# ---------------------------------------------------------------------------------------------
# responses


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
            f"TokenResult(access_token={_redact(self.access_token)}, "
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
            access_token_type=AccessTokenType(_int(body, "accessTokenType", 0) or 0),
        )


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


def error_object(error: BrokerStatusError) -> dict[str, Any]:
    """The protocol's error object for ``error``."""
    return {
        "status": int(error.status),
        "errorCode": error.error_code,
        "tag": error.tag,
        "subStatus": error.sub_status,
        "context": error.context,
        "diagnostics": None,
    }


def error_reply(error: BrokerStatusError, method: AnyMethod) -> dict[str, Any]:
    """The reply carrying ``error``: inside ``brokerTokenResponse`` for token methods."""
    wrapped = {"error": error_object(error)}
    return {"brokerTokenResponse": wrapped} if method.is_token_method else wrapped


def error_from_object(obj: Mapping[str, Any]) -> BrokerStatusError:
    """The BrokerStatusError an error object describes (a known status becomes a Status)."""
    context = obj.get("context")
    status = _int(obj, "status", 0) or 0
    return BrokerStatusError(
        Status(status) if status in Status._value2member_map_ else status,
        context if isinstance(context, str) else "the broker reported an error",
        error_code=_int(obj, "errorCode", 0) or 0,
        tag=_int(obj, "tag", 0) or 0,
        sub_status=_int(obj, "subStatus", 0) or 0,
    )


def find_error(obj: Mapping[str, Any]) -> BrokerStatusError | None:
    """The error object of a response, wherever the protocol allows it to be."""
    for holder in (obj, obj.get("brokerTokenResponse")):
        if isinstance(holder, Mapping) and isinstance(holder.get("error"), Mapping):
            return error_from_object(holder["error"])
    return None


Result = TokenResult | AccountsResult | OkResult | VersionResult | DefaultAccountResult

_RESULT_TYPES: dict[AnyMethod, Any] = {
    Method.ACQUIRE_TOKEN_INTERACTIVELY: TokenResult,
    Method.ACQUIRE_TOKEN_SILENTLY: TokenResult,
    Method.GET_ACCOUNTS: AccountsResult,
    Method.REMOVE_ACCOUNT: OkResult,
    Method.CANCEL_INTERACTIVE_FLOW: OkResult,
    Method.GET_LINUX_BROKER_VERSION: VersionResult,
    UiMethod.SET_DEFAULT_ACCOUNT: OkResult,
    UiMethod.GET_DEFAULT_ACCOUNT: DefaultAccountResult,
}


def encode(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def parse_response(method: AnyMethod, response_json: str) -> Result:
    """Typed result of a reply; raises its BrokerStatusError, or BrokerProtocolError."""
    try:
        obj = json.loads(response_json)
    except ValueError as exc:
        raise BrokerProtocolError(f"{method} reply is not JSON") from exc
    if not isinstance(obj, dict):
        raise BrokerProtocolError(f"{method} reply is not a JSON object")
    error = find_error(obj)
    if error is not None:
        raise error
    result_type = _RESULT_TYPES.get(method)
    if result_type is None:
        raise BrokerProtocolError(f"{method} has no typed result")
    return result_type.from_wire(obj)
