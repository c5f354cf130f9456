"""The Device Registration Service, client side: discovery, the join, the deletion ([MS-DVRJ]).

Every call blocks (``requests``, with timeouts and the CA trust msal's apps use: the default
bundle or ``REQUESTS_CA_BUNDLE``); the broker runs them in its executor. Discovery is
``GET {base}/{tenant}/Discover?api-version=1.9`` where ``base`` is the account's authority
(scheme and host), or Entra's ``enterpriseregistration.windows.net`` when the authority is one
of Microsoft's public-cloud hosts. The join posts the §1.2 body (a PKCS#10 request for the
device key, the transport key as a BCRYPT_RSAKEY_BLOB, ``JoinType`` 4) with the registration
token; any 2xx with a ``Certificate.RawBody`` is a device certificate. The deletion is
``DELETE {JoinEndpoint}{device id}`` with the device certificate and key as the TLS client
certificate: ``requests`` wants them as files, so they are written to a private directory (the
user's runtime directory when there is one) for the length of that one call.

Errors are ``BrokerStatusError`` naming the authority's ErrorDetails (``ErrorType``:
``Message``) and the HTTP status; never a token, a key or a certificate.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from authbroker import __version__, broker1, devicecrypto
from authbroker.daemon.device import JOIN_TYPE, DeviceIdentity
from authbroker.daemon.results import unreachable
from authbroker.errors import BrokerStatusError
from authbroker.files import write_private_atomic

log = logging.getLogger(__name__)

#: Entra's device registration host (used only for an authority on Microsoft's public cloud).
ENTRA_DRS = "https://enterpriseregistration.windows.net"
DISCOVERY_API_VERSION = "1.9"
DEFAULT_JOIN_VERSION = "2.0"
TIMEOUT_S = 30.0
DEVICE_TYPE = "Linux"
_HEADERS = {"ocp-adrs-client-name": "authbroker", "ocp-adrs-client-version": __version__,
            "Accept": "application/json"}


@dataclass(frozen=True)
class Discovery:
    """What the discovery document says registration needs."""

    join_endpoint: str
    join_resource_id: str
    service_version: str
    token_endpoint: str
    tenant_id: str


@dataclass(frozen=True, repr=False)
class Joined:
    """The join's answer: the device certificate (DER) and what it says."""

    cert_der: bytes
    device_id: str
    not_after: int

    def __repr__(self) -> str:
        return f"Joined(device_id={self.device_id!r})"


def discovery_url(authority: str, tenant: str) -> str:
    """Where ``authority``'s (``https://host[:port]/tenant``) devices are discovered."""
    parts = urlsplit(authority)
    host = (parts.hostname or "").lower()
    base = ENTRA_DRS if host in WELL_KNOWN_AUTHORITY_HOSTS else f"https://{parts.netloc}"
    return f"{base}/{quote(tenant, safe='')}/Discover?api-version={DISCOVERY_API_VERSION}"


def os_version(path: Path = Path("/etc/os-release")) -> str:
    """``PRETTY_NAME VERSION_ID`` of ``/etc/os-release`` (libhimmelblau's form), or "Linux"."""
    fields: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip('"').strip("'")
    except OSError:
        return DEVICE_TYPE
    text = " ".join(v for v in (fields.get("PRETTY_NAME"), fields.get("VERSION_ID")) if v)
    return text or DEVICE_TYPE


def _error_details(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        kind, message = body.get("ErrorType"), body.get("Message")
        if isinstance(kind, str) or isinstance(message, str):
            return f"{kind or 'Error'}: {str(message or '')[:300]}"
        if isinstance(body.get("error"), str):  # an OAuth-style error body
            return f"{body['error']}: {str(body.get('error_description') or '')[:300]}"
    return "no ErrorDetails in the answer"


def refused(response: requests.Response, what: str, site: str) -> BrokerStatusError:
    """The authority's refusal of ``what``, naming its ErrorDetails and the HTTP status."""
    status = (broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE if response.status_code >= 500
              else broker1.Status.UNEXPECTED)
    return BrokerStatusError(
        status, f"the device registration service refused {what} (HTTP "
        f"{response.status_code}, {_error_details(response)})", tag=site)


def _json(response: requests.Response, what: str, site: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BrokerStatusError(broker1.Status.UNEXPECTED,
                                f"the device registration service's {what} is not a JSON "
                                "object", tag=site)
    return body


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, Mapping) else {}


def parse_discovery(doc: Mapping[str, Any], authority: str, tenant: str) -> Discovery:
    """The endpoints a discovery document names (Entra's defaults where it names none)."""
    join = _section(doc, "DeviceJoinService")
    oauth = _section(_section(doc, "AuthenticationService"), "OAuth2")
    parts = urlsplit(authority)
    tenant_id = _section(doc, "TenantInfo").get("TenantId") or tenant
    return Discovery(
        join_endpoint=str(join.get("JoinEndpoint") or f"{ENTRA_DRS}/EnrollmentServer/device/"),
        join_resource_id=str(join.get("JoinResourceId") or ""),
        service_version=str(join.get("ServiceVersion") or DEFAULT_JOIN_VERSION),
        token_endpoint=str(oauth.get("TokenEndpoint")
                           or f"https://{parts.netloc}/{tenant_id}/oauth2/token"),
        tenant_id=str(tenant_id),
    )


def join_body(device_key: rsa.RSAPrivateKey, transport_key: rsa.RSAPrivateKey, *,
              target_domain: str, name: str) -> dict[str, Any]:
    """The §1.2 join request body (it holds public keys only)."""
    return {
        "CertificateRequest": {"Type": "pkcs10",
                               "Data": _std_b64(devicecrypto.csr_der(device_key))},
        "TransportKey": devicecrypto.transport_key_text(transport_key.public_key()),
        "TargetDomain": target_domain, "DeviceType": DEVICE_TYPE, "OSVersion": os_version(),
        "DeviceDisplayName": name or socket.gethostname(), "JoinType": JOIN_TYPE,
        "Attributes": {"ReuseDevice": "true", "ReturnClientSid": "true"},
    }


def _std_b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_certificate(body: Mapping[str, Any]) -> Joined:
    """The device certificate in a join answer (``Certificate.RawBody``, b64 DER)."""
    raw = _section(body, "Certificate").get("RawBody")
    try:
        der = devicecrypto.b64_any_decode(raw if isinstance(raw, str) else "")
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        device_id = str(names[0].value) if names else ""
    except (ValueError, devicecrypto.DeviceCryptoError):
        device_id = ""
    if not device_id:
        raise BrokerStatusError(broker1.Status.UNEXPECTED,
                                "the device registration service answered the join without a "
                                "readable device certificate (Certificate.RawBody)",
                                tag="drs.join.certificate")
    return Joined(der, device_id, int(cert.not_valid_after_utc.timestamp()))


class DrsClient:
    """Blocking calls to an authority's device registration service."""

    def __init__(self, session: requests.Session | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout

    def discover(self, authority: str, tenant: str) -> Discovery:
        url = discovery_url(authority, tenant)
        try:
            response = self.session.get(url, headers=_HEADERS, timeout=self.timeout)
        except requests.exceptions.RequestException as exc:
            raise unreachable(exc, authority, "drs.discover.network") from None
        if response.status_code != 200:
            raise refused(response, "the discovery", "drs.discover")
        found = parse_discovery(_json(response, "discovery document", "drs.discover"),
                                authority, tenant)
        log.info("device discovery at %s: join endpoint %s", urlsplit(url).netloc,
                 found.join_endpoint)
        return found

    def join(self, found: Discovery, token: str, device_key: rsa.RSAPrivateKey,
             transport_key: rsa.RSAPrivateKey, *, name: str = "") -> Joined:
        """POST the join with the registration ``token``; the device certificate."""
        body = join_body(device_key, transport_key,
                         target_domain=urlsplit(found.join_endpoint).hostname or "",
                         name=name)
        headers = dict(_HEADERS, Authorization=f"Bearer {token}")
        try:
            response = self.session.post(
                found.join_endpoint, params={"api-version": found.service_version},
                json=body, headers=headers, timeout=self.timeout)
        except requests.exceptions.RequestException as exc:
            raise unreachable(exc, found.join_endpoint, "drs.join.network") from None
        if not 200 <= response.status_code < 300:
            raise refused(response, "the join", "drs.join")
        return read_certificate(_json(response, "join answer", "drs.join"))

    def delete(self, device: DeviceIdentity) -> None:
        """DELETE the device at the authority, the device certificate as TLS client cert."""
        url = f"{device.join_endpoint.rstrip('/')}/{quote(device.device_id, safe='')}"
        with client_cert_files(device) as cert:
            try:
                response = self.session.delete(url, headers=_HEADERS, cert=cert,
                                               timeout=self.timeout)
            except requests.exceptions.RequestException as exc:
                raise unreachable(exc, device.join_endpoint, "drs.delete.network") from None
        if not 200 <= response.status_code < 300:
            raise refused(response, "the deletion", "drs.delete")


@contextmanager
def client_cert_files(device: DeviceIdentity) -> Iterator[tuple[str, str]]:
    """(certificate file, key file) of the device, in a private directory removed on exit."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    parent = runtime if runtime and os.path.isdir(runtime) else None
    where = Path(tempfile.mkdtemp(prefix="authbroker-device-", dir=parent))  # mode 0700
    try:
        cert_path, key_path = where / "device.crt", where / "device.key"
        write_private_atomic(cert_path, device.certificate.public_bytes(
            serialization.Encoding.PEM))
        write_private_atomic(key_path, device.device_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        yield str(cert_path), str(key_path)
    finally:
        shutil.rmtree(where, ignore_errors=True)
