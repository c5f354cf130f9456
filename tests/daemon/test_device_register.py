"""Device registration through the real daemon process on a private bus, the local authority
behind it, driven by our clients: RegisterDevice / GetDeviceStatus / UnregisterDevice, the
device kept across a restart, deleted at the authority, and its keys in none of the daemon's
log, audit log, stdout or the store's bytes."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from authbroker import broker1
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.daemon.device import DeviceIdentity
from authbroker.daemon.device_calls import META_KEY
from authbroker.daemon.persistence import AccountStore
from authbroker.errors import BrokerStatusError
from daemon.test_device_core import admin_act, admin_devices
from fixtures.daemon import DaemonProcess, daemon_env

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
SCOPE = "https://storage.azure.com/.default"


@pytest.fixture
def running(dbus_session, authority, tmp_path: Path, started_daemons):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=DEMO_USERS[0],
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD, AUTHBROKER_UI="browser")
    daemon = DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc")
    started_daemons.append(daemon)
    daemon.start()
    return daemon


def stored_device(store: Path) -> DeviceIdentity | None:
    saved = AccountStore(store, use_secret_service=False)
    try:
        record = saved.open().meta.get(META_KEY)
    finally:
        saved.close()
    return None if record is None else DeviceIdentity.from_record(record)


def key_forms(device: DeviceIdentity) -> list[bytes]:
    """Every spelling of the device's private keys that could leak: DER, its base64, PEM."""
    forms = []
    for key in (device.device_key, device.transport_key):
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        forms += [der[-64:], base64.b64encode(der)[40:120], pem.splitlines()[3]]
        forms.append(base64.b64encode(key.private_numbers().d.to_bytes(256, "big"))[:60])
    return forms


def assert_no_key_material(device: DeviceIdentity, *texts: bytes) -> None:
    for form in key_forms(device):
        for text in texts:
            assert form not in text


def test_register_status_restart_unregister_over_the_bus(running, authority, tmp_path):
    daemon = running
    with BrokerClient(timeout=120) as client:
        assert client.get_device_status() is None
        device = client.register_device(device_name="bus-laptop", on_device_code=None)
        assert device.state == "registered" and device.tenant_id == authority.tenant_id
        assert device.authority == f"{authority.authority}/{authority.tenant_id}"
        assert client.get_device_status() == device
        wire = broker1.DeviceStatusResult(device).to_wire()["device"]
        assert set(wire) >= {"deviceId", "tenantId", "authority", "joinType",
                             "certificateNotAfter", "state", "prt", "prtExpiresOn",
                             "prtRenewedAt"}
    assert admin_devices(authority)[device.device_id]["displayName"] == "bus-laptop"

    daemon.restart()

    async def after_restart() -> broker1.UnregisterDeviceResult:
        async with AsyncBrokerClient(timeout=60) as client:
            assert await client.get_device_status() == device
            return await client.unregister_device()

    stored = stored_device(tmp_path / "store.enc")
    assert stored is not None and stored.device_id == device.device_id
    result = asyncio.run(after_restart())
    assert result.deleted_at_authority, result
    assert admin_devices(authority)[device.device_id]["state"] == "deleted"
    assert stored_device(tmp_path / "store.enc") is None
    audit = tmp_path / "state" / "authbroker" / "broker" / "audit.jsonl"
    texts = [daemon.log_text().encode(), daemon.stdout_text().encode(),
             audit.read_bytes() if audit.exists() else b""]
    texts += [p.read_bytes() for p in tmp_path.glob("store.enc*") if p.is_file()]
    assert_no_key_material(stored, *texts)
    assert device.device_id in daemon.log_text()
    assert daemon.stdout_text() == ""


def test_a_disabled_device_says_so_and_registers_again(running, authority, tmp_path):
    if importlib.util.find_spec("authbroker.daemon.prt_calls") is None:
        pytest.skip("the daemon's PRT support (daemon/prt_calls.py) is not there yet")
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
        assert device.prt == "active", device
        admin_act(authority, device.device_id, "disable")
        auth = broker1.AuthParameters(client_id="7f7a0f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6",
                                      requested_scopes=(SCOPE,),
                                      account=client.get_accounts(CLIENT_ID)[0])
        with pytest.raises(BrokerStatusError):  # a client without a token of its own
            client.acquire_token_silently(auth)
        disabled = client.get_device_status()
        assert disabled is not None and not disabled.usable, disabled
        again = client.register_device(on_device_code=None)
        assert again.device_id != device.device_id and again.usable


def test_register_refused_by_the_authority_names_its_error(running, authority) -> None:
    with BrokerClient(timeout=60) as client, pytest.raises(BrokerStatusError) as err:
        client.register_device(tenant="00000000-0000-0000-0000-00000000dead",
                               on_device_code=None)
    assert err.value.context, err.value
    with BrokerClient(timeout=60) as client:
        assert client.get_device_status() is None


