"""The device CA: issues [MS-DVRJ] device certificates and checks the ones devices present.

Separate from the TLS CA of :mod:`authbroker.authority.pki`: an RSA-2048 key and a self-signed
certificate (``device-ca.key`` 0600, ``device-ca.pem`` 0644 in the data directory), created on
first start and reused afterwards, so devices registered before a restart still authenticate.

A device certificate (docs/device-identity.md §1.4): subject ``CN=<device id>``, the CSR's
public key (RSA-2048, signature SHA-256 checked), a random serial, valid one year, KeyUsage
digitalSignature, EKU clientAuth, and the non-critical extensions ``1.2.840.113556.1.5.284.2``
(the device id) and ``…284.3`` (the user's object id), each a DER OCTET STRING of the GUID's 16
bytes in Windows (little-endian ``bytes_le``) order, as Windows' ``new Guid(byte[])`` reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from authbroker.files import write_private_atomic

log = logging.getLogger(__name__)

CA_DAYS = 3650
DEVICE_DAYS = 365
KEY_SIZE = 2048
DEVICE_ID_OID = ObjectIdentifier("1.2.840.113556.1.5.284.2")
USER_OID_OID = ObjectIdentifier("1.2.840.113556.1.5.284.3")
CA_CERT_NAME = "device-ca.pem"
CA_KEY_NAME = "device-ca.key"


class CsrError(ValueError):
    """The certificate request cannot be issued; the message says why (no key bytes)."""


class CertError(ValueError):
    """A presented certificate is not one this CA issued and still valid.

    ``untrusted`` is True when it does not chain to the device CA at all (AADSTS50012), False
    when it does but is expired or not yet valid (AADSTS50155).
    """

    def __init__(self, reason: str, *, untrusted: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.untrusted = untrusted


def guid_extension_value(value: str) -> bytes:
    """DER OCTET STRING of a GUID's 16 bytes in Windows order."""
    return b"\x04\x10" + uuid.UUID(value).bytes_le


def guid_from_extension(cert: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    """The GUID one of the device extensions carries, or None."""
    try:
        ext = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    raw = getattr(ext, "value", b"")
    if len(raw) != 18 or raw[:2] != b"\x04\x10":
        return None
    return str(uuid.UUID(bytes_le=bytes(raw[2:])))


def load_csr(der: bytes) -> x509.CertificateSigningRequest:
    """A PKCS#10 request whose signature verifies, for an RSA-2048 key, signed SHA-256."""
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError:
        raise CsrError("CertificateRequest.Data is not a DER PKCS#10 request") from None
    key = csr.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != KEY_SIZE:
        raise CsrError(f"the certificate request's key must be RSA of {KEY_SIZE} bits")
    if not isinstance(csr.signature_hash_algorithm, hashes.SHA256):
        raise CsrError("the certificate request must be signed with SHA256WithRSAEncryption")
    if not csr.is_signature_valid:
        raise CsrError("the certificate request's signature does not verify")
    return csr


class DeviceCA:
    """The device CA's key and certificate; :meth:`issue` and :meth:`verify`."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey,
                 cert_path: Path | None) -> None:
        self.cert = cert
        self._key = key
        self.cert_path = cert_path

    @classmethod
    def load_or_create(cls, data_dir: Path) -> DeviceCA:
        cert_path, key_path = data_dir / CA_CERT_NAME, data_dir / CA_KEY_NAME
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{key_path} is not an RSA key")
            return cls(cert, key, cert_path)
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        cert = _self_signed(key)
        write_private_atomic(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        write_private_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM),
                             mode=0o644)
        log.info("created a device CA in %s", data_dir)
        return cls(cert, key, cert_path)

    @classmethod
    def ephemeral(cls) -> DeviceCA:
        """A CA kept in memory only (an authority state built without a data directory)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        return cls(_self_signed(key), key, None)

    def issue(self, csr: x509.CertificateSigningRequest | bytes, device_id: str,
              user_oid: str) -> x509.Certificate:
        """The device certificate for a (DER or parsed) request; :class:`CsrError` if bad."""
        request = load_csr(csr) if isinstance(csr, bytes) else csr
        if not request.is_signature_valid:
            raise CsrError("the certificate request's signature does not verify")
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
            .issuer_name(self.cert.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=DEVICE_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .add_extension(x509.UnrecognizedExtension(
                DEVICE_ID_OID, guid_extension_value(device_id)), critical=False)
            .add_extension(x509.UnrecognizedExtension(
                USER_OID_OID, guid_extension_value(user_oid)), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def verify(self, cert: x509.Certificate, now: dt.datetime | None = None) -> str:
        """The device id (subject CN) of a certificate this CA signed and still valid, else
        :class:`CertError`."""
        if cert.issuer != self.cert.subject:
            raise CertError("it was not issued by this authority's device CA", untrusted=True)
        try:
            cert.verify_directly_issued_by(self.cert)
        except (InvalidSignature, TypeError, ValueError):
            raise CertError("its signature is not the device CA's", untrusted=True) from None
        now = now or dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CertError("the device certificate has expired or is not yet valid",
                            untrusted=False)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(names) != 1:
            raise CertError("the device certificate has no device id", untrusted=False)
        return str(names[0].value)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, key_cert_sign=cert_sign, crl_sign=cert_sign,
        content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, encipher_only=False, decipher_only=False,
    )


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "authbroker"),
        x509.NameAttribute(NameOID.COMMON_NAME, "authbroker local authority device CA"),
    ])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
