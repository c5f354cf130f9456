"""The Device Registration Service ([MS-DVRJ], docs/device-identity.md §1): discovery, join,
and the device's own deletion.

- ``GET /{tenant}/Discover`` (any ``api-version``; a token, when sent, is ignored): the Entra
  discovery subset of §1.1, every URL on this authority.
- ``POST /EnrollmentServer/device/`` with ``Authorization: Bearer <access token of this
  authority>`` whose ``aud`` is one of :data:`~authbroker.authority.scopes.DRS_NAMES`, for a
  user of the directory's own tenant: registers a device and answers 200 with its certificate.
- ``DELETE /EnrollmentServer/device/{id}`` authenticated by the device certificate as TLS
  client certificate (:mod:`authbroker.authority.server` asks for an optional one, verified
  against the device CA): deletes the device.

Every refusal is an [MS-DVRJ] ErrorDetails body (§1.5): 400 ``InvalidParameter``, 401
``AuthenticationError``, 403 ``AuthorizationError``, 404 ``DeviceNotFound``.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authbroker.authority.devices import DeviceObject, DeviceRegistry, JoinRefused, JoinRequest
from authbroker.authority.directory import User
from authbroker.authority.errors import EntraError
from authbroker.authority.scopes import DRS_NAMES, DRS_RESOURCE
from authbroker.authority.state import AuthorityState, authority_of
from authbroker.devicecrypto import DeviceCryptoError, b64_any_decode

log = logging.getLogger(__name__)

JOIN_PATH = "/EnrollmentServer/device/"
SERVICE_VERSION = "2.0"
MAX_TEXT = 256
MAX_BLOB = 16 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class DrsError(Exception):
    """A refusal answered as an ErrorDetails body; the message never holds a token or key."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message

    def response(self) -> web.Response:
        headers = dict(_NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = f'Bearer resource="{DRS_RESOURCE}"'
        return web.json_response({
            "ErrorType": self.error_type, "Message": self.message,
            "TraceId": str(uuid.uuid4()),
            "Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }, status=self.status, headers=headers)


def _bad(message: str) -> DrsError:
    return DrsError(400, "InvalidParameter", message)


def _unauthenticated(message: str) -> DrsError:
    return DrsError(401, "AuthenticationError", message)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _error_details(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except DrsError as exc:
            log.info("DRS refused %s %s: %s", request.method, request.path[:200], exc)
            return exc.response()
    return wrapped


def registry(st: AuthorityState) -> DeviceRegistry:
    """The authority's device registry (503 when it was built without one)."""
    if not isinstance(st.devices, DeviceRegistry):
        raise DrsError(503, "ServiceUnavailable", "this authority keeps no device registry")
    return st.devices


def delete_device(st: AuthorityState, device_id: str) -> DeviceObject:
    """Delete a device and drop every PRT issued to it (KeyError: unknown or deleted)."""
    device = registry(st).delete(device_id)
    dropped = st.prts.forget_device(device_id)
    log.info("deleted device %s and %d PRT(s)", device_id, dropped)
    return device


# -- discovery ------------------------------------------------------------------------------------
@_error_details
async def discover(request: web.Request) -> web.Response:
    st = authority_of(request)
    segment = request.match_info["tenant"]
    scope = st.directory.tenant_scope(segment)
    if scope is None or not scope.organizational:
        raise DrsError(404, "TenantNotFound", f"tenant '{segment[:100]}' is not served here")
    tid, base = st.directory.tenant_id, st.base_url
    return web.json_response({
        "DiscoveryService": {"DiscoveryEndpoint": f"{base}/{tid}/Discover",
                             "ServiceVersion": "1.9"},
        "DeviceJoinService": {"JoinEndpoint": f"{base}{JOIN_PATH}",
                              "JoinResourceId": DRS_RESOURCE,
                              "ServiceVersion": SERVICE_VERSION},
        "AuthenticationService": {"OAuth2": {
            "AuthCodeEndpoint": f"{base}/{tid}/oauth2/authorize",
            "TokenEndpoint": f"{base}/{tid}/oauth2/token"}},
        "IdentityProviderService": {"Federated": False},
        "TenantInfo": {"TenantId": tid, "TenantName": st.directory.domain,
                       "DisplayName": st.directory.domain},
    })


# -- join -----------------------------------------------------------------------------------------
def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("the join needs 'Authorization: Bearer <access token>' for "
                               f"{DRS_RESOURCE}")
    return token.strip()


def _token_user(st: AuthorityState, token: str) -> User:
    """The directory user an access token of this authority for the DRS was issued to."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = jwt.PyJWKSet.from_dict(st.minter.key.jwks())[str(kid)].key
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=["RS256"], audience=list(DRS_NAMES),
            options={"require": ["exp", "iat", "aud", "iss", "tid", "oid"]})
    except jwt.ExpiredSignatureError:
        raise _unauthenticated("the access token has expired") from None
    except jwt.InvalidAudienceError:
        raise _unauthenticated(f"the access token is not for the DRS (aud must be "
                               f"{DRS_RESOURCE})") from None
    except (jwt.InvalidTokenError, jwt.PyJWKSetError, KeyError):
        raise _unauthenticated("the access token is not a valid token of this "
                               "authority") from None
    tid = str(claims["tid"])
    issuers = (f"https://sts.windows.net/{tid}/", st.minter.issuer(st.base_url, tid))
    if claims["iss"] not in issuers:
        raise _unauthenticated("the access token was not issued by this authority")
    name = claims.get("unique_name") or claims.get("preferred_username") or ""
    user = st.directory.user(str(name))
    if user is None or user.oid != claims["oid"]:
        raise _unauthenticated("the access token's user is not in the directory")
    if user.personal or user.tenant_id != st.directory.tenant_id:
        raise DrsError(403, "AuthorizationError",
                       "only users of the organization's tenant may register devices")
    return user


def _text(body: dict[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _bad(f"'{name}' must be a non-empty string of at most {limit} characters")
    return value


def _join_type(body: dict[str, Any]) -> int:
    value = body.get("JoinType")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1000:
        raise _bad("'JoinType' must be a number")
    return value


async def _join_request(request: web.Request) -> JoinRequest:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    csr = body.get("CertificateRequest")
    if not isinstance(csr, dict) or str(csr.get("Type", "")).lower() != "pkcs10":
        raise _bad("'CertificateRequest' must be {\"Type\": \"pkcs10\", \"Data\": <base64>}")
    try:
        der = b64_any_decode(_text(csr, "Data", MAX_BLOB))
    except DeviceCryptoError:
        raise _bad("'CertificateRequest.Data' is not base64") from None
    _text(body, "TargetDomain")  # required by the spec; Entra does not check its value
    return JoinRequest(
        csr_der=der, transport_key=_text(body, "TransportKey", MAX_BLOB),
        device_type=_text(body, "DeviceType"), os_version=_text(body, "OSVersion"),
        display_name=_text(body, "DeviceDisplayName"), join_type=_join_type(body),
    )


@_error_details
async def join(request: web.Request) -> web.Response:
    st = authority_of(request)
    user = _token_user(st, _bearer(request))
    join_request = await _join_request(request)
    try:
        device, cert = registry(st).register(join_request, user_oid=user.oid,
                                           tenant_id=user.tenant_id)
    except JoinRefused as exc:
        raise _bad(str(exc)) from None
    der = cert.public_bytes(serialization.Encoding.DER)
    return web.json_response({
        "Certificate": {"Thumbprint": device.cert_thumbprint,
                        "RawBody": base64.b64encode(der).decode("ascii")},
        "User": {"Upn": user.username},
        "MembershipChanges": [],
    }, headers=_NO_STORE)


# -- the device deleting itself (TLS client certificate) ------------------------------------------
def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The TLS client certificate the request came with (verified by the TLS layer against
    the device CA), or None."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


@_error_details
async def delete(request: web.Request) -> web.Response:
    st = authority_of(request)
    cert = peer_certificate(request)
    if cert is None:
        raise _unauthenticated("deleting a device needs its certificate as TLS client "
                               "certificate")
    try:
        device = registry(st).authenticate(cert)
    except EntraError as exc:
        status, kind = (403, "AuthorizationError") if exc.code == 135011 else \
            (401, "AuthenticationError")
        raise DrsError(status, kind, f"AADSTS{exc.code}: {exc.description}") from None
    try:
        wanted = str(uuid.UUID(request.match_info["id"]))
    except ValueError:
        raise DrsError(404, "DeviceNotFound", "no such device") from None
    if wanted != device.device_id:
        raise DrsError(403, "AuthorizationError", "a device may delete only itself")
    delete_device(st, device.device_id)
    return web.json_response({"DeviceId": device.device_id, "Deleted": True},
                             headers=_NO_STORE)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/{tenant}/Discover", discover)
    app.router.add_post(JOIN_PATH, join)
    app.router.add_post(JOIN_PATH.rstrip("/"), join)
    app.router.add_delete(JOIN_PATH + "{id}", delete)
