"""The method table: every method the broker object answers, declared once (``METHODS``).

One row per method: its interface, D-Bus signature, request type, result type, whether it is a
token call (its errors travel inside ``brokerTokenResponse``) and whether it is routine (an
answered call is logged at DEBUG). Introspection, the daemon's signature check, the codec's
parse tables, the clients' message building and the access log's levels all read this table.

Adding a method: a member of :class:`Method` (or :class:`UiMethod`), one row below, its
message types, a handler coroutine, and the client methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from authbroker.broker1 import requests as rq
from authbroker.broker1 import results as rs
from authbroker.broker1.names import (
    EXTENSION_INTERFACE,
    GET_DEFAULT_ACCOUNT,
    GET_DEVICE_STATUS,
    GET_STATUS,
    INTERFACE,
    REGISTER_DEVICE,
    SET_DEFAULT_ACCOUNT,
    UNREGISTER_DEVICE,
)


class Method(StrEnum):
    """Broker1's methods, each ``(s protocol_version, s correlation_id, s request_json) -> s``."""

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
        return METHODS[self].token_call


class UiMethod(StrEnum):
    """Our own methods on ``EXTENSION_INTERFACE`` (not Broker1): ``(s correlation_id,
    s request_json) -> s response_json``; errors travel as a top-level ``error`` object."""

    SET_DEFAULT_ACCOUNT = SET_DEFAULT_ACCOUNT
    GET_DEFAULT_ACCOUNT = GET_DEFAULT_ACCOUNT
    GET_STATUS = GET_STATUS
    REGISTER_DEVICE = REGISTER_DEVICE
    GET_DEVICE_STATUS = GET_DEVICE_STATUS
    UNREGISTER_DEVICE = UNREGISTER_DEVICE

    @property
    def is_token_method(self) -> bool:
        return METHODS[self].token_call


AnyMethod = Method | UiMethod

#: The in-arguments of each calling convention, by D-Bus signature (all strings).
ARG_NAMES: dict[str, tuple[str, ...]] = {
    "sss": ("protocol_version", "correlation_id", "request_json"),
    "ss": ("correlation_id", "request_json"),
}
RESULT_ARG = "result"  # the one out-argument: the response JSON
_COUNT = {2: "two", 3: "three"}


@dataclass(frozen=True)
class MethodSpec:
    """One row of :data:`METHODS`."""

    method: AnyMethod
    interface: str
    signature: str  # of the in-arguments; the reply is always "s"
    request: type[rq.Request]
    result: type[rs.Result] | None  # None: the method has no typed result (never answered OK)
    token_call: bool = False
    routine: bool = False

    @property
    def arg_names(self) -> tuple[str, ...]:
        return ARG_NAMES[self.signature]

    @property
    def correlation_index(self) -> int:
        """Where the correlation id is among the arguments (just before request_json)."""
        return len(self.signature) - 2

    def describe_args(self) -> str:
        """The arguments in words, for the error a wrong D-Bus signature gets."""
        names = self.arg_names
        return f"{_COUNT[len(names)]} strings ({', '.join(names)})"


def _broker1(method: Method, request: type[rq.Request], result: type[rs.Result] | None, *,
             token_call: bool = False, routine: bool = False) -> MethodSpec:
    return MethodSpec(method, INTERFACE, "sss", request, result, token_call, routine)


def _ours(method: UiMethod, request: type[rq.Request], result: type[rs.Result]) -> MethodSpec:
    return MethodSpec(method, EXTENSION_INTERFACE, "ss", request, result)


_ROWS = (
    _broker1(Method.ACQUIRE_TOKEN_INTERACTIVELY, rq.TokenRequest, rs.TokenResult,
             token_call=True),
    _broker1(Method.ACQUIRE_TOKEN_SILENTLY, rq.TokenRequest, rs.TokenResult,
             token_call=True, routine=True),
    _broker1(Method.GET_ACCOUNTS, rq.GetAccountsRequest, rs.AccountsResult, routine=True),
    _broker1(Method.REMOVE_ACCOUNT, rq.RemoveAccountRequest, rs.OkResult),
    _broker1(Method.ACQUIRE_PRT_SSO_COOKIE, rq.PrtSsoCookieRequest, rs.PrtSsoCookieResult),
    _broker1(Method.GENERATE_SIGNED_HTTP_REQUEST, rq.SignedHttpRequestRequest,
             rs.SignedHttpRequestResult),
    _broker1(Method.CANCEL_INTERACTIVE_FLOW, rq.CancelRequest, rs.OkResult),
    _broker1(Method.GET_LINUX_BROKER_VERSION, rq.OpaqueRequest, rs.VersionResult, routine=True),
    _ours(UiMethod.SET_DEFAULT_ACCOUNT, rq.SetDefaultAccountRequest, rs.OkResult),
    _ours(UiMethod.GET_DEFAULT_ACCOUNT, rq.OpaqueRequest, rs.DefaultAccountResult),
    _ours(UiMethod.GET_STATUS, rq.OpaqueRequest, rs.StatusResult),
    _ours(UiMethod.REGISTER_DEVICE, rq.RegisterDeviceRequest, rs.DeviceStatusResult),
    _ours(UiMethod.GET_DEVICE_STATUS, rq.OpaqueRequest, rs.DeviceStatusResult),
    _ours(UiMethod.UNREGISTER_DEVICE, rq.UnregisterDeviceRequest, rs.UnregisterDeviceResult),
)

#: Every method, in declaration order (introspection lists them in this order).
METHODS: dict[AnyMethod, MethodSpec] = {row.method: row for row in _ROWS}
#: The same rows by member name, as a method call names them.
BY_NAME: dict[str, MethodSpec] = {row.method.value: row for row in _ROWS}
#: Methods whose answered calls are logged at DEBUG (the hot path).
ROUTINE: frozenset[AnyMethod] = frozenset(row.method for row in _ROWS if row.routine)

if set(METHODS) != set(Method) | set(UiMethod):  # pragma: no cover - a row was forgotten
    raise AssertionError("every Method and UiMethod needs a row in METHODS")


def is_token_method(method: AnyMethod) -> bool:
    """Whether ``method``'s errors travel inside ``brokerTokenResponse``."""
    return METHODS[method].token_call
