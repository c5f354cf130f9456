"""Device registration in the broker core (no bus): against the real local authority, real msal
and the real encrypted store — registered, kept across a restart, marked disabled, registered
again, unregistered (at the authority and ``localOnly``), and a corrupt device record."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from authbroker import broker1, devicecrypto
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.device import DeviceIdentity
from authbroker.daemon.device_calls import BROKER_CLIENT_ID, META_KEY
from authbroker.daemon.drs_client import DrsClient, discovery_url
from authbroker.daemon.persistence import AccountStore
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import USER, ctx, make_core, person


def admin_devices(authority: Any) -> dict[str, dict[str, Any]]:
    """The authority's device objects by id (its admin endpoint, with its admin token)."""
    admin = json.loads((Path(authority.data_dir) / "admin.json").read_text())
    answer = requests.get(f"{admin['url']}/admin/devices", timeout=10,
                          headers={"Authorization": f"Bearer {admin['token']}"})
    answer.raise_for_status()
    return {d["deviceId"]: d for d in answer.json()["devices"]}


def admin_act(authority: Any, device_id: str, action: str) -> None:
    admin = json.loads((Path(authority.data_dir) / "admin.json").read_text())
    answer = requests.post(f"{admin['url']}/admin/devices/{device_id}/{action}", timeout=10,
                           headers={"Authorization": f"Bearer {admin['token']}"})
    answer.raise_for_status()


async def register(core: BrokerCore, **kwargs: Any) -> broker1.DeviceStatus:
    result = await core.handle(broker1.UiMethod.REGISTER_DEVICE,
                               broker1.RegisterDeviceRequest(**kwargs), ctx())
    assert isinstance(result, broker1.DeviceStatusResult) and result.device is not None
    return result.device


async def device_status(core: BrokerCore) -> broker1.DeviceStatus | None:
    result = await core.handle(broker1.UiMethod.GET_DEVICE_STATUS, broker1.OpaqueRequest(),
                               ctx())
    assert isinstance(result, broker1.DeviceStatusResult)
    return result.device


async def unregister(core: BrokerCore, local_only: bool = False) -> broker1.UnregisterDeviceResult:
    result = await core.handle(broker1.UiMethod.UNREGISTER_DEVICE,
                               broker1.UnregisterDeviceRequest(local_only), ctx())
    assert isinstance(result, broker1.UnregisterDeviceResult)
    return result


def test_register_restart_mark_reregister_unregister(authority, tmp_path):
    path = tmp_path / "store.enc"

    async def first() -> broker1.DeviceStatus:
        core = make_core(authority.authority, path, person(USER))
        device = await register(core, device_name="laptop-7")
        assert device.state == "registered" and device.usable
        assert device.tenant_id == authority.tenant_id and device.join_type == 4
        assert device.authority == f"{authority.authority}/{authority.tenant_id}"
        assert device.certificate_not_after > device.registered_at
        identity = core.devices.identity
        assert identity is not None and identity.device_id == device.device_id
        cert = x509.load_der_x509_certificate(identity.cert_der)
        assert cert.public_key().public_numbers() == identity.device_key.public_key() \
            .public_numbers()
        assert "PRIVATE" not in repr(identity) and device.device_id in repr(identity)
        # the registration's sign-in is an account of the broker, for the broker client
        assert [a["username"] for a in core.accounts.entries()] == [USER]
        await core.aclose()
        return device

    device = asyncio.run(first())
    seen = admin_devices(authority)[device.device_id]
    assert seen["state"] == "enabled" and seen["displayName"] == "laptop-7"

    async def after_restart() -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: must not be needed
        again = await device_status(core)
        assert again is not None and again.device_id == device.device_id
        core.devices.mark("disabled")
        marked = await device_status(core)
        assert marked is not None and marked.state == "disabled" and not marked.usable
        await asyncio.sleep(0.1)  # mark's flush
        await core.aclose()
        saved = AccountStore(path, use_secret_service=False)
        assert saved.open().meta[META_KEY]["state"] == "disabled"
        saved.close()
        core = make_core(authority.authority, path, person(USER))
        fresh = await register(core)
        assert fresh.device_id != device.device_id and fresh.state == "registered"
        gone = await unregister(core)
        assert gone.deleted_at_authority and gone.reason == ""
        assert await device_status(core) is None
        assert (await unregister(core)).reason == "no device is registered"
        await core.aclose()
        assert admin_devices(authority)[fresh.device_id]["state"] == "deleted"

    asyncio.run(after_restart())


def test_unregister_local_only_keeps_the_device_at_the_authority(authority, tmp_path):
    async def run() -> str:
        core = make_core(authority.authority, tmp_path / "store.enc", person(USER))
        device = await register(core)
        result = await unregister(core, local_only=True)
        assert not result.deleted_at_authority and result.reason == "localOnly"
        assert await device_status(core) is None and core.devices.identity is None
        await core.aclose()
        return device.device_id

    device_id = asyncio.run(run())
    assert admin_devices(authority)[device_id]["state"] == "enabled"
    saved = AccountStore(tmp_path / "store.enc", use_secret_service=False)
    assert META_KEY not in saved.open().meta
    saved.close()


def test_a_corrupt_device_record_is_not_registered_and_can_be_replaced(authority, tmp_path,
                                                                       caplog):
    path = tmp_path / "store.enc"
    store = AccountStore(path, use_secret_service=False)
    store.open()
    store.commit([], {"core": 3, "defaultAccount": None, "defaultChosen": False,
                      META_KEY: {"v": 1, "deviceId": "x", "deviceKey": "not base64!"}})
    store.close()

    async def run() -> None:
        core = make_core(authority.authority, path, person(USER))
        with caplog.at_level(logging.ERROR, "authbroker.daemon.device_calls"):
            assert await device_status(core) is None
        assert "device record is unreadable" in caplog.text and "not base64!" not in caplog.text
        device = await register(core)
        assert (await device_status(core)) == device
        await core.aclose()

    asyncio.run(run())


def test_discovery_and_the_authoritys_refusals_named(authority):
    drs = DrsClient()
    found = drs.discover(f"{authority.authority}/{authority.tenant_id}", authority.tenant_id)
    assert found.join_endpoint == f"{authority.authority}/EnrollmentServer/device/"
    assert found.tenant_id == authority.tenant_id
    assert found.token_endpoint.startswith(f"{authority.authority}/{authority.tenant_id}/")
    with pytest.raises(BrokerStatusError) as err:
        drs.join(found, "not-a-token", devicecrypto.new_rsa_key(), devicecrypto.new_rsa_key())
    assert "refused the join (HTTP 401, AuthenticationError: " in err.value.context
    assert discovery_url("https://login.microsoftonline.com/contoso", "t1") == (
        "https://enterpriseregistration.windows.net/t1/Discover?api-version=1.9")


def test_device_identity_record_round_trip_and_rejects():
    key = devicecrypto.new_rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    device = DeviceIdentity("dev-1", "tid", "https://a/tid", "oid.tid",
                            cert.public_bytes(serialization.Encoding.DER), key,
                            devicecrypto.new_rsa_key(), "https://a/join/", "https://a/token", 1,
                            2)
    record = device.to_record()
    back = DeviceIdentity.from_record(json.loads(json.dumps(record)))
    assert back.to_record() == record and back.state == "registered"
    assert "dev-1" in repr(back) and record["deviceKey"] not in repr(back)
    old = {k: v for k, v in record.items() if k != "keysIn"} | {"v": 1}  # before keysIn
    assert DeviceIdentity.from_record(old).to_record() == record
    for broken in ({**record, "v": 3}, {**record, "deviceKey": "AAAA"},
                   {**record, "state": "lost"}, {**record, "registeredAt": "1"},
                   {**record, "keysIn": "elsewhere"}, [], None):
        try:
            DeviceIdentity.from_record(broken)
        except ValueError as exc:
            assert record["deviceKey"][:40] not in str(exc)
        else:
            raise AssertionError(f"accepted {broken!r:.60}")
    assert BROKER_CLIENT_ID == "29d9ed98-a469-4536-ade2-f981bc1d605e"
