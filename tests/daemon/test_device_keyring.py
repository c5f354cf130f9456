"""The device's two private keys in the Secret Service: a real daemon on a private bus with a
real gnome-keyring, the local authority behind it. With the keyring there, registration puts
the device key and the transport key in two keyring items and the store's record names them;
a restart reads them back; unregister deletes them; keys registered without a keyring move
into one that appears later; items that went missing make the device ``locked``, not lost."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
import secretstorage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker import broker1
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import BrokerClient
from authbroker.daemon.device import DeviceIdentity
from authbroker.daemon.device_calls import META_KEY
from authbroker.daemon.device_keys import ATTRIBUTES, DeviceKeyVault
from authbroker.daemon.persistence import AccountStore
from authbroker.errors import BrokerStatusError
from daemon.test_device_core import admin_devices
from daemon.test_device_register import SCOPE, assert_no_key_material
from fixtures.bus import SecretService, gnome_keyring
from fixtures.daemon import DaemonProcess, daemon_env

NON_FAMILY = "7f7a0f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


@pytest.fixture
def daemon(dbus_session, authority, tmp_path: Path, started_daemons) -> DaemonProcess:
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=DEMO_USERS[0],
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD, AUTHBROKER_UI="browser")
    process = DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc")
    started_daemons.append(process)
    return process


def device_items(keyring: SecretService) -> list[bytes]:
    return keyring.secrets(ATTRIBUTES)


def stored_record(store: Path) -> dict:
    saved = AccountStore(store)  # the keyring's store key, as the daemon has it
    try:
        return dict(saved.open().meta.get(META_KEY) or {})
    finally:
        saved.close()


def stored_identity(store: Path) -> DeviceIdentity:
    """The device as the daemon reads it: the record from the store, the keys from the keyring."""
    saved = AccountStore(store)
    try:
        return DeviceIdentity.from_record(saved.open().meta[META_KEY],
                                          DeviceKeyVault(saved.keys).get)
    finally:
        saved.close()


def silent_for_a_new_app(client: BrokerClient) -> broker1.TokenResult:
    account = client.get_accounts(CLIENT_ID)[0]
    return client.acquire_token_silently(broker1.AuthParameters(
        client_id=NON_FAMILY, requested_scopes=(SCOPE,), account=account))


def test_keys_live_in_the_keyring_and_leave_with_unregister(
        dbus_session, secret_service: SecretService, daemon: DaemonProcess, authority,
        tmp_path: Path) -> None:
    daemon.start()
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
        assert device.state == "registered" and device.prt == "active", device
    secrets = device_items(secret_service)
    assert len(secrets) == 2  # the device key and the transport key
    keys = [serialization.load_der_private_key(s, password=None) for s in secrets]
    assert all(isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048 for k in keys)
    identity = stored_identity(tmp_path / "store.enc")
    record = stored_record(tmp_path / "store.enc")
    assert record["keysIn"] == "secret-service" and record["deviceId"] == device.device_id
    assert "deviceKey" not in record and "transportKey" not in record

    daemon.restart()  # the keys come back from the keyring
    with BrokerClient(timeout=60) as client:
        assert client.get_device_status() == device
        assert silent_for_a_new_app(client).access_token  # served from the PRT
        result = client.unregister_device()
    assert result.deleted_at_authority, result
    assert device_items(secret_service) == []
    assert admin_devices(authority)[device.device_id]["state"] == "deleted"
    texts = [daemon.log_text().encode(), daemon.stdout_text().encode()]
    texts += [p.read_bytes() for p in tmp_path.glob("store.enc*") if p.is_file()]
    assert_no_key_material(identity, *texts)
    assert daemon.stdout_text() == ""


def test_keys_move_into_a_keyring_that_appears_later(
        dbus_session, daemon: DaemonProcess, tmp_path: Path) -> None:
    daemon.start()  # no Secret Service on the bus: keys sealed in the store
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
    before = AccountStore(tmp_path / "store.enc").open().meta[META_KEY]
    assert before["keysIn"] == "store" and before["deviceKey"]
    daemon.stop()
    with gnome_keyring(dbus_session) as keyring:
        daemon.start()
        with BrokerClient(timeout=60) as client:
            assert client.get_device_status() == device
            assert silent_for_a_new_app(client).access_token
        assert len(device_items(keyring)) == 2
        record = stored_record(tmp_path / "store.enc")
        assert record["keysIn"] == "secret-service" and "deviceKey" not in record
        assert "moved its keys from the store into the Secret Service" in daemon.log_text()
        daemon.stop()


def test_keys_gone_from_the_keyring_make_the_device_locked_not_lost(
        dbus_session, secret_service: SecretService, daemon: DaemonProcess,
        tmp_path: Path) -> None:
    daemon.start()
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
    daemon.stop()
    with closing(secretstorage.dbus_init()) as conn:  # someone cleaned the keyring up
        for item in secretstorage.search_items(conn, dict(ATTRIBUTES)):
            item.delete()
    daemon.start()
    with BrokerClient(timeout=60) as client:
        locked = client.get_device_status()
        assert locked is not None and locked.state == "locked" and not locked.usable
        assert locked.device_id == device.device_id
        with pytest.raises(BrokerStatusError) as err:  # no PRT: today's answer, no hang
            silent_for_a_new_app(client)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        with pytest.raises(BrokerStatusError) as err:
            client.unregister_device()
        assert err.value.status == broker1.Status.KEY_NOT_FOUND
        assert "unlock" in str(err.value) and "--local-only" in str(err.value)
        assert stored_record(tmp_path / "store.enc")["deviceId"] == device.device_id
        result = client.unregister_device(local_only=True)
        assert not result.deleted_at_authority
        assert client.get_device_status() is None
    assert "cannot give them" in daemon.log_text()
