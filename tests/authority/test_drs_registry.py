"""The device registry and the device CA on their own: persistence across restarts, a damaged
``devices.json``, and every way a certificate fails to authenticate a device."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from authbroker import devicecrypto
from authbroker.authority.device_ca import CertError, CsrError, DeviceCA, load_csr
from authbroker.authority.devices import (
    DeviceRegistry,
    JoinRefused,
    JoinRequest,
    thumbprint,
)
from authbroker.authority.errors import EntraError
from authbroker.devkit.processes import environ
from fixtures.authority import start_authority
from fixtures.drs import admin_call, drs_token, registered

USER_OID = "a022a096-1eea-5c4b-9178-d7473247e5c8"
TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"


def join(key=None) -> JoinRequest:
    key = key or devicecrypto.new_rsa_key()
    transport = devicecrypto.transport_key_text(devicecrypto.new_rsa_key().public_key())
    return JoinRequest(devicecrypto.csr_der(key), transport, "Linux", "Debian 13", "box", 4)


def code_of(registry: DeviceRegistry, cert: x509.Certificate) -> int | None:
    try:
        registry.authenticate(cert)
    except EntraError as exc:
        return exc.code
    return None


def test_the_registry_survives_a_reload_with_every_field(tmp_path):
    first = DeviceRegistry.in_data_dir(tmp_path)
    device, cert = first.register(join(), user_oid=USER_OID, tenant_id=TENANT)
    first.disable(device.device_id)
    again = DeviceRegistry.in_data_dir(tmp_path)
    loaded = again.get(device.device_id)
    assert loaded is not None and not loaded.enabled
    assert loaded.transport_key.public_numbers() == device.transport_key.public_numbers()
    assert (loaded.user_oid, loaded.tenant_id, loaded.display_name, loaded.device_type,
            loaded.os_version, loaded.join_type, loaded.cert_thumbprint, loaded.created) == (
            USER_OID, TENANT, "box", "Linux", "Debian 13", 4, thumbprint(cert), device.created)
    assert code_of(again, cert) == 135011
    again.enable(device.device_id)
    assert DeviceRegistry.in_data_dir(tmp_path).authenticate(cert).device_id == device.device_id
    assert (tmp_path / "devices.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                       # half-written
    lambda text: "",                                           # empty
    lambda text: "\x00\x01garbage",                            # not JSON
    lambda text: json.dumps({"version": 99, "devices": []}),    # another format
    lambda text: text.replace('"deviceId": "', '"deviceId": "x'),  # a bad record
])
def test_a_damaged_devices_file_is_moved_aside_not_a_crash(tmp_path, caplog, damage):
    registry = DeviceRegistry.in_data_dir(tmp_path)
    registry.register(join(), user_oid=USER_OID, tenant_id=TENANT)
    path = tmp_path / "devices.json"
    broken = damage(path.read_text())
    path.write_text(broken)
    with caplog.at_level(logging.ERROR, logger="authbroker.authority.devices"):
        fresh = DeviceRegistry.in_data_dir(tmp_path)
    assert fresh.all() == []
    [aside] = tmp_path.glob("devices.json.corrupt-*")
    assert aside.read_text() == broken  # kept for a person to look at
    assert "moved it to" in caplog.text and "started with no devices" in caplog.text
    device, _ = fresh.register(join(), user_oid=USER_OID, tenant_id=TENANT)  # and it works
    assert DeviceRegistry.in_data_dir(tmp_path).get(device.device_id) is not None


def test_the_authority_starts_with_a_damaged_devices_file(tmp_path):
    data_dir = tmp_path / "authority"
    data_dir.mkdir()
    (data_dir / "devices.json").write_text('{"version": 1, "devices": [{"deviceId"')
    with start_authority(tmp_path, data_dir=data_dir) as running, \
            environ(running.trust_env()):
        listed = admin_call(data_dir, "GET", "/admin/devices")
        assert listed.status_code == 200 and listed.json() == {"devices": []}
        assert "devices.json cannot be read" in running.log_text()
    assert list(data_dir.glob("devices.json.corrupt-*"))
    assert not (data_dir / "admin.json").exists()  # removed at a clean stop


def test_devices_and_their_certificates_survive_an_authority_restart(tmp_path):
    data_dir = tmp_path / "authority"
    with start_authority(tmp_path, data_dir=data_dir) as first, environ(first.trust_env()):
        device_id, cert, identity = registered(first, drs_token(first), tmp_path / "device")
        ca_pem = (data_dir / "device-ca.pem").read_bytes()
        first.stop()
        with start_authority(tmp_path, data_dir=data_dir) as second:
            assert (data_dir / "device-ca.pem").read_bytes() == ca_pem
            listed = admin_call(data_dir, "GET", "/admin/devices").json()["devices"]
            assert [d["deviceId"] for d in listed] == [device_id]
            # the certificate issued before the restart still authenticates the device (mTLS)
            answer = requests.delete(f"{second.device_join_endpoint}{device_id}",
                                     cert=identity, timeout=10)
            assert answer.status_code == 200, answer.text
    assert code_of(DeviceRegistry.in_data_dir(data_dir), cert) == 50155


def test_certificates_that_do_not_authenticate(tmp_path):
    registry = DeviceRegistry.in_data_dir(tmp_path)
    key = devicecrypto.new_rsa_key()
    device, cert = registry.register(join(key), user_oid=USER_OID, tenant_id=TENANT)
    assert code_of(registry, cert) is None
    # another CA, even one with the same name
    other = DeviceCA.ephemeral().issue(devicecrypto.csr_der(key), device.device_id, USER_OID)
    assert code_of(registry, other) == 50012
    # our CA, but not the certificate issued at registration
    second = registry.ca.issue(devicecrypto.csr_der(key), device.device_id, USER_OID)
    assert code_of(registry, second) == 50155
    # our CA, a device that never registered
    stranger = registry.ca.issue(devicecrypto.csr_der(key), str(uuid.uuid4()), USER_OID)
    assert code_of(registry, stranger) == 50155
    # expired
    with pytest.raises(CertError) as expired:
        registry.ca.verify(cert, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=400))
    assert not expired.value.untrusted
    registry.delete(device.device_id)
    assert code_of(registry, cert) == 50155 and registry.get(device.device_id) is None
    with pytest.raises(KeyError):
        registry.disable(device.device_id)


def test_an_expired_device_certificate_is_50155(tmp_path):
    registry = DeviceRegistry.in_data_dir(tmp_path)
    device, cert = registry.register(join(), user_oid=USER_OID, tenant_id=TENANT)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    expired = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(past).not_valid_after(past + dt.timedelta(days=365))
               .sign(registry.ca._key, hashes.SHA256()))
    assert code_of(registry, expired) == 50155


def test_the_csr_must_be_rsa_2048_sha256_and_well_signed():
    key = devicecrypto.new_rsa_key()
    assert load_csr(devicecrypto.csr_der(key)).public_key().public_numbers() == \
        key.public_key().public_numbers()
    sha384 = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA384())
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(CsrError, match="SHA256"):
        load_csr(sha384.public_bytes(Encoding.DER))
    with pytest.raises(CsrError, match="PKCS#10"):
        load_csr(b"\x30\x03\x02\x01\x00")


def test_a_bad_transport_key_refuses_the_join_and_records_nothing(tmp_path):
    registry = DeviceRegistry.in_data_dir(tmp_path)
    bad = JoinRequest(devicecrypto.csr_der(devicecrypto.new_rsa_key()), "UlNBMQ==",
                      "Linux", "x", "y", 4)
    with pytest.raises(JoinRefused, match="TransportKey"):
        registry.register(bad, user_oid=USER_OID, tenant_id=TENANT)
    assert registry.all() == [] and not (tmp_path / "devices.json").exists()


def test_session_authority_keeps_the_device_ca_apart(authority, tmp_path):
    device_id, cert, _ = registered(authority, drs_token(authority), tmp_path)
    tls_ca = x509.load_pem_x509_certificate((authority.data_dir / "ca.pem").read_bytes())
    assert cert.issuer != tls_ca.subject
    assert (authority.data_dir / "device-ca.key").stat().st_mode & 0o777 == 0o600
