"""Broker1's fixed names and numbers: bus name, object path, interfaces, status codes, limits.

Every Broker1 string but the method names (see ``broker1.methods``) is spelled here once. The
status numbering is the broker's own, as pymsalruntime maps it; 12 and 23 have no member on
purpose (see :class:`Status`).
"""

from __future__ import annotations

from enum import IntEnum

BUS_NAME = "com.microsoft.identity.broker1"
OBJECT_PATH = "/com/microsoft/identity/broker1"
INTERFACE = "com.microsoft.identity.Broker1"
PEER_INTERFACE = "org.freedesktop.DBus.Peer"
INTROSPECTABLE_INTERFACE = "org.freedesktop.DBus.Introspectable"
#: Our own interface on the same object (not Broker1): the default account, device-code prompts.
EXTENSION_INTERFACE = "io.authbroker.BrokerUi1"
DEVICE_CODE_SIGNAL = "DeviceCodePrompt"  # (s correlation_id, s prompt_json)
#: Methods of EXTENSION_INTERFACE, each ``(s correlation_id, s request_json) -> s``.
SET_DEFAULT_ACCOUNT = "SetDefaultAccount"
GET_DEFAULT_ACCOUNT = "GetDefaultAccount"
GET_STATUS = "GetStatus"  # accounts, the default one, the sign-ins waiting for a person
REGISTER_DEVICE = "RegisterDevice"  # one sign-in, then the device joined (and a PRT)
GET_DEVICE_STATUS = "GetDeviceStatus"  # the registered device (never its keys), or null
UNREGISTER_DEVICE = "UnregisterDevice"  # deleted at the authority where it can, then locally
PROTOCOL_VERSION = "0.0"
BROKER_VERSION = "2.0.4"  # what getLinuxBrokerVersion reports (compatible with known clients)
#: Requests larger than this (bytes of request_json) are refused with an error object.
MAX_REQUEST_BYTES = 256 * 1024
#: pymsalruntime gives up on any call after this many seconds.
CLIENT_CALL_TIMEOUT_S = 300.0

NATIVE_CLIENT_REDIRECT_URI = "https://login.microsoftonline.com/common/oauth2/nativeclient"
DEFAULT_ENVIRONMENT = "login.microsoftonline.com"

#: D-Bus errors that mean "no broker is there to answer" (plus any ``…Error.Spawn*``), as
#: opposed to a broker that answered with a D-Bus error.
UNAVAILABLE_ERRORS = frozenset({
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.NoServer",
})
UNAVAILABLE_ERROR_PREFIX = "org.freedesktop.DBus.Error.Spawn"


def is_unavailable_error(name: str) -> bool:
    """Whether the D-Bus error ``name`` means no broker could answer (none runs, none starts)."""
    return name in UNAVAILABLE_ERRORS or name.startswith(UNAVAILABLE_ERROR_PREFIX)


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
