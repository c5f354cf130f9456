"""The authority's local CA and TLS server certificate (P-256), kept in its data directory.

Created on first start and reused afterwards, so clients keep trusting a restarted authority.
The server certificate is reissued (by the same CA) when it nears expiry or lacks the host.
Every file is written through ``authbroker.files`` (atomic and fsynced; keys 0600, certificates
and the bundle 0644).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from authbroker.files import write_private_atomic

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class PkiPaths:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    bundle: Path

    @classmethod
    def in_dir(cls, data_dir: Path) -> PkiPaths:
        return cls(
            data_dir / "ca.pem", data_dir / "ca.key", data_dir / "server.pem",
            data_dir / "server.key", data_dir / "bundle.pem",
        )


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically and durably, readable by its owner only."""
    write_private_atomic(path, data)


def _write_public(path: Path, data: bytes) -> None:
    """Write a certificate or the bundle atomically and durably, readable by everyone."""
    write_private_atomic(path, data, mode=0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _create_ca(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "authbroker"),
        x509.NameAttribute(NameOID.COMMON_NAME, "authbroker local authority CA"),
    ])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(paths.ca_key, _key_pem(key))
    _write_public(paths.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a local CA in %s", paths.ca_cert.parent)
    return cert, key


def _issue_server(
    paths: PkiPaths, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
    names: list[str],
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(paths.server_key, _key_pem(key))
    _write_public(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    log.info("issued a TLS server certificate for %s", ", ".join(names))


def _server_ok(paths: PkiPaths, ca: x509.Certificate, names: list[str]) -> bool:
    if not (paths.server_cert.exists() and paths.server_key.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return cert.issuer == ca.subject and wanted <= have and fresh


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _public_roots() -> bytes:
    """The machine's own trust store first (it carries any enterprise or proxy CA), else certifi.

    ``REQUESTS_CA_BUNDLE`` replaces a client's trust store, so the bundle must keep everything
    the machine already trusts, or pointing it at the bundle breaks every other HTTPS call.
    """
    default = ssl.get_default_verify_paths().cafile
    for candidate in (default, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.exists(candidate):
            return Path(candidate).read_bytes()
    try:
        import certifi

        return Path(certifi.where()).read_bytes()
    except (ImportError, OSError):
        return b""


def ensure_pki(data_dir: Path, host: str = "127.0.0.1") -> PkiPaths:
    """Create (first start) or reuse the CA and server certificate; refresh ``bundle.pem``."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = PkiPaths.in_dir(data_dir)
    ca_key: ec.EllipticCurvePrivateKey
    if paths.ca_cert.exists() and paths.ca_key.exists():
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths.ca_key} is not an EC key")
        ca_key = loaded
    else:
        ca, ca_key = _create_ca(paths)
    names = list(DEFAULT_NAMES)
    if host not in names and host not in ("0.0.0.0", "::"):
        names.append(host)
    if not _server_ok(paths, ca, names):
        _issue_server(paths, ca, ca_key, names)
    roots = _public_roots()
    if roots and not roots.endswith(b"\n"):
        roots += b"\n"
    _write_public(paths.bundle, roots + paths.ca_cert.read_bytes())
    return paths
