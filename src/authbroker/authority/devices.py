"""The device registry: the directory's device objects, persisted in ``devices.json``.

A device is registered by the DRS join (:mod:`authbroker.authority.drs`), which hands
:meth:`DeviceRegistry.register` the join's certificate request and transport key; the registry
issues the certificate through its :class:`~authbroker.authority.device_ca.DeviceCA` and
records the device. Whoever trusts a device (the PRT grant, the exchange, the SSO credential)
asks :meth:`DeviceRegistry.authenticate` with the presented certificate, or
:meth:`DeviceRegistry.require` with a device id on every later use, so a device disabled or
deleted by the admin is refused from then on with Entra's codes: AADSTS50012 (certificate from
another CA), AADSTS50155 (expired certificate, unknown or deleted device), AADSTS135011
(disabled).

``devices.json`` (0600) is rewritten whole through :func:`authbroker.files.write_private_atomic`
on every change. A file that cannot be read is moved aside (``devices.json.corrupt-<time>``) with
an error in the log, and the authority starts with no devices rather than not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker.authority import errors
from authbroker.authority.device_ca import CertError, CsrError, DeviceCA, load_csr
from authbroker.devicecrypto import DeviceCryptoError, parse_transport_key
from authbroker.files import write_private_atomic

log = logging.getLogger(__name__)

FILE_NAME = "devices.json"
FORMAT_VERSION = 1


class JoinRefused(ValueError):
    """A join request that cannot be honoured; the message names the bad member, never bytes."""


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER certificate, hex upper case ([MS-DVRJ] ``Certificate.Thumbprint``)."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


@dataclass(frozen=True)
class DeviceObject:
    """One device object. ``transport_key`` is the public key the session key is wrapped to."""

    device_id: str
    user_oid: str
    tenant_id: str
    display_name: str
    device_type: str
    os_version: str
    join_type: int
    cert_thumbprint: str
    transport_key: rsa.RSAPublicKey
    enabled: bool = True
    deleted: bool = False
    created: int = 0

    @property
    def state(self) -> str:
        """``enabled``, ``disabled`` or ``deleted``."""
        return "deleted" if self.deleted else "enabled" if self.enabled else "disabled"

    def view(self) -> dict[str, Any]:
        """What the admin API lists (no key material)."""
        return {
            "deviceId": self.device_id, "userOid": self.user_oid, "tenantId": self.tenant_id,
            "displayName": self.display_name, "deviceType": self.device_type,
            "osVersion": self.os_version, "joinType": self.join_type,
            "certificateThumbprint": self.cert_thumbprint, "state": self.state,
            "created": self.created,
        }

    def to_json(self) -> dict[str, Any]:
        pem = self.transport_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {**self.view(), "enabled": self.enabled, "deleted": self.deleted,
                "transportKey": pem.decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceObject:
        key = serialization.load_pem_public_key(str(data["transportKey"]).encode("ascii"))
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("a transport key is not RSA")
        return cls(
            device_id=str(uuid.UUID(str(data["deviceId"]))), user_oid=str(data["userOid"]),
            tenant_id=str(data["tenantId"]), display_name=str(data["displayName"]),
            device_type=str(data["deviceType"]), os_version=str(data["osVersion"]),
            join_type=int(data["joinType"]), cert_thumbprint=str(data["certificateThumbprint"]),
            transport_key=key, enabled=bool(data["enabled"]), deleted=bool(data["deleted"]),
            created=int(data["created"]),
        )


@dataclass(frozen=True)
class JoinRequest:
    """The members of a [MS-DVRJ] join the registry keeps (already type-checked by the DRS)."""

    csr_der: bytes
    transport_key: str
    device_type: str
    os_version: str
    display_name: str
    join_type: int


class DeviceRegistry:
    """Device objects by id, persisted in ``path`` (None: in memory only)."""

    def __init__(self, path: Path | None, ca: DeviceCA) -> None:
        self.path = path
        self.ca = ca
        self._devices: dict[str, DeviceObject] = {}
        if path is not None:
            self._devices = _load(path)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DeviceRegistry:
        return cls(data_dir / FILE_NAME, DeviceCA.load_or_create(data_dir))

    @classmethod
    def in_memory(cls) -> DeviceRegistry:
        """A registry with a throw-away CA (for an authority state built without a data dir)."""
        return cls(None, DeviceCA.ephemeral())

    # -- registration ---------------------------------------------------------------------------
    def register(self, join: JoinRequest, *, user_oid: str,
                 tenant_id: str) -> tuple[DeviceObject, x509.Certificate]:
        """Issue the certificate and record a new device; :class:`JoinRefused` if bad."""
        try:
            csr = load_csr(join.csr_der)
        except CsrError as exc:
            raise JoinRefused(str(exc)) from None
        try:
            transport_key = parse_transport_key(join.transport_key)
        except DeviceCryptoError as exc:
            raise JoinRefused(f"TransportKey is not valid: {exc}") from None
        device_id = str(uuid.uuid4())
        cert = self.ca.issue(csr, device_id, user_oid)
        device = DeviceObject(
            device_id=device_id, user_oid=user_oid, tenant_id=tenant_id,
            display_name=join.display_name, device_type=join.device_type,
            os_version=join.os_version, join_type=join.join_type,
            cert_thumbprint=thumbprint(cert), transport_key=transport_key,
            created=int(time.time()),
        )
        self._devices[device_id] = device
        self._save()
        log.info("registered device %s (user %s)", device_id, user_oid)
        return device, cert

    # -- what every device-authenticated request asks --------------------------------------------
    def authenticate(self, cert: x509.Certificate) -> DeviceObject:
        """The enabled device a certificate belongs to, else an :class:`EntraError`
        (50012 another CA, 50155 expired/unknown/deleted/not its certificate, 135011 disabled)."""
        try:
            device_id = self.ca.verify(cert)
        except CertError as exc:
            if exc.untrusted:
                raise errors.device_untrusted(exc.reason) from None
            raise errors.device_auth_failed(exc.reason) from None
        device = self._devices.get(device_id)
        if device is not None and device.cert_thumbprint != thumbprint(cert):
            raise errors.device_auth_failed("the certificate is not the device's certificate")
        return self.require(device_id)

    def require(self, device_id: str) -> DeviceObject:
        """The device if it exists and is enabled, else an :class:`EntraError` (50155 unknown
        or deleted, 135011 disabled)."""
        device = self._devices.get(device_id)
        if device is None or device.deleted:
            raise errors.device_auth_failed("the device is not registered (unknown or deleted)")
        if not device.enabled:
            raise errors.device_disabled()
        return device

    def get(self, device_id: str) -> DeviceObject | None:
        """The device object (also when disabled), None when unknown or deleted."""
        device = self._devices.get(device_id)
        return None if device is None or device.deleted else device

    def all(self, *, include_deleted: bool = True) -> list[DeviceObject]:
        devices = sorted(self._devices.values(), key=lambda d: (d.created, d.device_id))
        return [d for d in devices if include_deleted or not d.deleted]

    # -- admin ----------------------------------------------------------------------------------
    def disable(self, device_id: str) -> DeviceObject:
        """KeyError when unknown or deleted."""
        return self._change(device_id, enabled=False)

    def enable(self, device_id: str) -> DeviceObject:
        return self._change(device_id, enabled=True)

    def delete(self, device_id: str) -> DeviceObject:
        """Keep a tombstone (so its certificate is answered 50155, not "unknown CA")."""
        return self._change(device_id, deleted=True)

    def _change(self, device_id: str, *, enabled: bool | None = None,
                deleted: bool = False) -> DeviceObject:
        device = self.get(device_id)
        if device is None:
            raise KeyError(device_id)
        device = replace(device, enabled=device.enabled if enabled is None else enabled,
                         deleted=deleted)
        self._devices[device_id] = device
        self._save()
        log.info("device %s is now %s", device_id, device.state)
        return device

    def _save(self) -> None:
        if self.path is None:
            return
        body = {"version": FORMAT_VERSION,
                "devices": [d.to_json() for d in self.all(include_deleted=True)]}
        write_private_atomic(self.path, json.dumps(body, indent=1).encode())


def _load(path: Path) -> dict[str, DeviceObject]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError("not a devices file of this version")
        devices = [DeviceObject.from_json(entry) for entry in data["devices"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        os.replace(path, aside)
        log.error("%s cannot be read (%s); moved it to %s and started with no devices",
                  path, type(exc).__name__, aside.name)
        return {}
    return {d.device_id: d for d in devices}
