"""The device identity the broker registered: its id, certificate, two private keys, state.

A :class:`DeviceIdentity` is what a device registration ([MS-DVRJ], ``device_calls.py``) leaves
behind: the device id the authority gave (the certificate's ``CN``), the tenant and authority
it is registered with, the account that registered it (the PRT's user), the device certificate
(DER), the device key (signs the PRT request) and the transport key (the session key is
encrypted to it), the endpoints, and its state (``registered``, ``disabled`` or ``deleted``).

Its record form (:meth:`DeviceIdentity.to_record` / :meth:`DeviceIdentity.from_record`) is a
JSON-able dict kept in the store's sealed meta row under ``"device"`` (certificate as DER,
standard base64); the record is only ever written sealed. Its ``keysIn`` says where the two
private keys are (``device_keys.py``): ``secret-service`` (two keyring items; the record holds
no key), or ``store`` (the keys in the record, PKCS#8 DER). Neither the keys nor the
certificate appear in a ``repr``, a log line, an exception or a status reply:
:meth:`DeviceIdentity.status_fields` is what may be shown.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker.daemon.device_keys import IN_SECRET_SERVICE, IN_STORE
from authbroker.daemon.keys import KeyUnavailableError

#: The record's format version (``"v"``); version 1 (keys always in the record) is read too.
RECORD_VERSION = 2
#: The join type authbroker registers with: Entra *register* (a user's device, no management).
JOIN_TYPE = 4
STATES = ("registered", "disabled", "deleted")


class DeviceRecordError(ValueError):
    """A stored device record is unreadable; the message names the field, never its bytes."""


class DeviceKeysUnavailable(DeviceRecordError):
    """The record is whole, but its keys are in a Secret Service that cannot give them now."""


#: Reads a device's keys from where its record says (``device_keys.DeviceKeyVault.get``).
KeyReader = Callable[[str], dict[str, bytes]]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(record: dict[str, Any], name: str) -> bytes:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise DeviceRecordError(f"the device record has no {name}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DeviceRecordError(f"the device record's {name} is not base64") from None


def _key_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _key(record: dict[str, Any], name: str) -> rsa.RSAPrivateKey:
    return _load_key(_unb64(record, name), name)


def _load_key(der: bytes, name: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise DeviceRecordError(f"the device record's {name} is not a private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DeviceRecordError(f"the device record's {name} is not an RSA key")
    return key


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise DeviceRecordError(f"the device record has no {name}")
    return value


def _int(record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceRecordError(f"the device record's {name} is not a number")
    return value


@dataclass(repr=False)
class DeviceIdentity:
    """A registered device (see the module docstring); never in a ``repr``."""

    device_id: str
    tenant_id: str
    authority: str  # authority URL incl. tenant, as accounts use
    home_account_id: str  # the account that registered it (the PRT's user)
    cert_der: bytes
    device_key: rsa.RSAPrivateKey
    transport_key: rsa.RSAPrivateKey
    join_endpoint: str
    token_endpoint: str
    registered_at: int
    cert_not_after: int
    state: str = "registered"  # registered | disabled | deleted
    keys_in: str = IN_STORE  # where the two private keys are kept (device_keys.py)

    def __repr__(self) -> str:
        return (f"DeviceIdentity(device_id={self.device_id!r}, tenant_id={self.tenant_id!r}, "
                f"state={self.state!r})")

    __str__ = __repr__

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der)

    def with_state(self, state: str) -> DeviceIdentity:
        if state not in STATES:
            raise ValueError(f"unknown device state {state!r}")
        return dataclasses.replace(self, state=state)

    def key_ders(self) -> dict[str, bytes]:
        """The two private keys as PKCS#8 DER, by ``device_keys.KEY_NAMES`` (never show)."""
        return {"device": _key_der(self.device_key), "transport": _key_der(self.transport_key)}

    def to_record(self) -> dict[str, Any]:
        """The JSON-able form the store seals (with ``keysIn`` ``store`` it holds the private
        keys: never show it)."""
        record: dict[str, Any] = {
            "v": RECORD_VERSION, "deviceId": self.device_id, "tenantId": self.tenant_id,
            "authority": self.authority, "homeAccountId": self.home_account_id,
            "certificate": _b64(self.cert_der), "keysIn": self.keys_in,
            "joinEndpoint": self.join_endpoint, "tokenEndpoint": self.token_endpoint,
            "registeredAt": self.registered_at, "certificateNotAfter": self.cert_not_after,
            "state": self.state,
        }
        if self.keys_in == IN_STORE:
            ders = self.key_ders()
            record["deviceKey"], record["transportKey"] = (_b64(ders["device"]),
                                                           _b64(ders["transport"]))
        return record

    @staticmethod
    def peek(record: Any) -> dict[str, Any]:
        """What a record says of itself without its keys (a status while they are away)."""
        if not isinstance(record, dict):
            return {}
        return {name: record[name] for name in (
            "deviceId", "tenantId", "authority", "homeAccountId", "registeredAt",
            "certificateNotAfter", "state", "keysIn") if name in record}

    @classmethod
    def from_record(cls, record: Any, read_keys: KeyReader | None = None) -> DeviceIdentity:
        """The identity a record holds; DeviceRecordError (a ValueError) if it is unreadable,
        DeviceKeysUnavailable if its keys are in a Secret Service that cannot give them."""
        if not isinstance(record, dict):
            raise DeviceRecordError("the device record is not an object")
        if record.get("v") not in (1, RECORD_VERSION):
            raise DeviceRecordError("the device record has an unknown version")
        keys_in = record.get("keysIn", IN_STORE)
        if keys_in not in (IN_STORE, IN_SECRET_SERVICE):
            raise DeviceRecordError("the device record's keysIn is unknown")
        cert_der = _unb64(record, "certificate")
        try:
            x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise DeviceRecordError("the device record's certificate is unreadable") from None
        state = record.get("state", "registered")
        if state not in STATES:
            raise DeviceRecordError("the device record has an unknown state")
        device_id = _text(record, "deviceId")
        if keys_in == IN_STORE:
            device_key, transport_key = _key(record, "deviceKey"), _key(record, "transportKey")
        else:
            if read_keys is None:
                raise DeviceKeysUnavailable("the device's keys are in the Secret Service")
            try:
                ders = read_keys(device_id)
            except KeyUnavailableError as exc:
                raise DeviceKeysUnavailable(f"its keys are in the Secret Service: {exc}") from None
            device_key = _load_key(ders["device"], "device key")
            transport_key = _load_key(ders["transport"], "transport key")
        return cls(
            device_id=device_id, tenant_id=_text(record, "tenantId"),
            authority=_text(record, "authority"), home_account_id=_text(record, "homeAccountId"),
            cert_der=cert_der, device_key=device_key, transport_key=transport_key,
            join_endpoint=_text(record, "joinEndpoint"),
            token_endpoint=_text(record, "tokenEndpoint"),
            registered_at=_int(record, "registeredAt"),
            cert_not_after=_int(record, "certificateNotAfter"), state=state, keys_in=keys_in,
        )

    def status_fields(self) -> dict[str, Any]:
        """What a status reply may show (contract §3, without the PRT's fields)."""
        return {"deviceId": self.device_id, "tenantId": self.tenant_id,
                "authority": self.authority, "homeAccountId": self.home_account_id,
                "joinType": JOIN_TYPE, "registeredAt": self.registered_at,
                "certificateNotAfter": self.cert_not_after, "state": self.state}
