"""The Broker1 wire definition: bus names, methods, status codes, typed messages, codec.

One module per job, all re-exported here (call sites read ``broker1.TokenRequest``):
``names`` (bus name, path, interfaces, Status, limits, the "no broker" D-Bus errors) ·
``methods`` (Method, UiMethod and METHODS, the one method table) · ``messages`` (Account,
AuthParameters, DeviceCodePrompt …) · ``requests`` · ``results`` · ``fields`` (field readers) ·
``codec`` (parse/encode, error objects) · ``introspect`` (XML from METHODS) · ``memo``.
See docs/broker1.md for the protocol itself.
"""

from authbroker.broker1.codec import (
    encode,
    error_from_object,
    error_object,
    error_reply,
    find_error,
    parse_request,
    parse_response,
)
from authbroker.broker1.introspect import introspection_xml
from authbroker.broker1.messages import (
    BEARER_SCHEME,
    POP_SCHEME,
    Account,
    AuthParameters,
    DeviceCodePrompt,
    PopParams,
    decode_client_info,
    encode_client_info,
)
from authbroker.broker1.methods import (
    METHODS,
    AnyMethod,
    Method,
    MethodSpec,
    UiMethod,
    is_token_method,
)
from authbroker.broker1.names import (
    BROKER_VERSION,
    BUS_NAME,
    CLIENT_CALL_TIMEOUT_S,
    DEFAULT_ENVIRONMENT,
    DEVICE_CODE_SIGNAL,
    EXTENSION_INTERFACE,
    GET_DEFAULT_ACCOUNT,
    GET_STATUS,
    INTERFACE,
    INTROSPECTABLE_INTERFACE,
    MAX_REQUEST_BYTES,
    NATIVE_CLIENT_REDIRECT_URI,
    OBJECT_PATH,
    PEER_INTERFACE,
    PROTOCOL_VERSION,
    SET_DEFAULT_ACCOUNT,
    UNAVAILABLE_ERRORS,
    AccessTokenType,
    AuthorizationType,
    Status,
    is_unavailable_error,
)
from authbroker.broker1.requests import (
    CancelRequest,
    GetAccountsRequest,
    OpaqueRequest,
    RemoveAccountRequest,
    Request,
    SetDefaultAccountRequest,
    SignedHttpRequestRequest,
    TokenRequest,
)
from authbroker.broker1.results import (
    AccountsResult,
    CallerStatus,
    DefaultAccountResult,
    OkResult,
    Result,
    SignedHttpRequestResult,
    SignInStatus,
    StatusResult,
    TokenResult,
    VersionResult,
)

__all__ = [
    # names
    "BUS_NAME",
    "OBJECT_PATH",
    "INTERFACE",
    "PEER_INTERFACE",
    "INTROSPECTABLE_INTERFACE",
    "EXTENSION_INTERFACE",
    "DEVICE_CODE_SIGNAL",
    "SET_DEFAULT_ACCOUNT",
    "GET_DEFAULT_ACCOUNT",
    "GET_STATUS",
    "PROTOCOL_VERSION",
    "BROKER_VERSION",
    "MAX_REQUEST_BYTES",
    "CLIENT_CALL_TIMEOUT_S",
    "NATIVE_CLIENT_REDIRECT_URI",
    "DEFAULT_ENVIRONMENT",
    "UNAVAILABLE_ERRORS",
    "is_unavailable_error",
    "Status",
    "AuthorizationType",
    "AccessTokenType",
    # methods
    "Method",
    "UiMethod",
    "AnyMethod",
    "MethodSpec",
    "METHODS",
    "is_token_method",
    # messages
    "Account",
    "PopParams",
    "POP_SCHEME",
    "BEARER_SCHEME",
    "AuthParameters",
    "DeviceCodePrompt",
    "encode_client_info",
    "decode_client_info",
    # requests
    "TokenRequest",
    "GetAccountsRequest",
    "RemoveAccountRequest",
    "CancelRequest",
    "OpaqueRequest",
    "SetDefaultAccountRequest",
    "SignedHttpRequestRequest",
    "Request",
    # results
    "TokenResult",
    "AccountsResult",
    "OkResult",
    "DefaultAccountResult",
    "SignInStatus",
    "CallerStatus",
    "StatusResult",
    "SignedHttpRequestResult",
    "VersionResult",
    "Result",
    # codec
    "encode",
    "parse_request",
    "parse_response",
    "error_object",
    "error_reply",
    "error_from_object",
    "find_error",
    # introspection
    "introspection_xml",
]
