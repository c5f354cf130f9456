"""A registered device at the authority: deleting itself over mutual TLS, the admin API
(disable, enable, delete), and what the registry then answers for its certificate."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import requests
from aiohttp.test_utils import make_mocked_request

from authbroker import devicecrypto
from authbroker.authority import AuthorityConfig, serve
from authbroker.authority.admin import ADMIN_KEY, act, list_devices
from authbroker.authority.app import create_app
from authbroker.authority.device_ca import DeviceCA
from authbroker.authority.devices import DeviceRegistry
from authbroker.authority.errors import EntraError
from authbroker.authority.prt_store import PrtRecord
from fixtures.drs import (
    admin_call,
    certificate_of,
    drs_token,
    join_body,
    post_join,
    registered,
    write_identity,
)


@pytest.fixture(scope="module")
def token(authority) -> str:
    return drs_token(authority)


def registry(authority) -> DeviceRegistry:
    """The registry as the authority last saved it."""
    return DeviceRegistry.in_data_dir(authority.data_dir)


def aadsts(authority, cert) -> int | None:
    try:
        registry(authority).authenticate(cert)
    except EntraError as exc:
        return exc.code
    return None


def delete(authority, device_id: str, identity=None) -> requests.Response:
    return requests.delete(f"{authority.device_join_endpoint}{device_id}", cert=identity,
                           timeout=10)


def test_a_device_deletes_itself_with_its_certificate(authority, token, tmp_path):
    device_id, cert, identity = registered(authority, token, tmp_path)
    assert aadsts(authority, cert) is None
    answer = delete(authority, device_id, identity)
    assert answer.status_code == 200, answer.text
    assert aadsts(authority, cert) == 50155
    again = delete(authority, device_id, identity)
    assert again.status_code == 401 and "50155" in again.json()["Message"]


def test_delete_without_a_certificate_is_401(authority, token, tmp_path):
    device_id, cert, _ = registered(authority, token, tmp_path)
    answer = delete(authority, device_id)
    assert answer.status_code == 401, answer.text
    assert answer.json()["ErrorType"] == "AuthenticationError"
    assert aadsts(authority, cert) is None  # still registered


def test_a_certificate_from_another_ca_is_refused(authority, token, tmp_path):
    device_id, cert, _ = registered(authority, token, tmp_path / "real")
    key = devicecrypto.new_rsa_key()
    foreign = DeviceCA.ephemeral().issue(devicecrypto.csr_der(key), device_id, "0" * 32)
    with pytest.raises(requests.exceptions.ConnectionError):  # the TLS layer refuses it
        delete(authority, device_id, write_identity(tmp_path / "foreign", foreign, key))
    assert aadsts(authority, cert) is None
    with pytest.raises(EntraError) as refused:
        registry(authority).authenticate(foreign)
    assert refused.value.code == 50012


def test_a_device_may_delete_only_itself(authority, token, tmp_path):
    first, first_cert, identity = registered(authority, token, tmp_path / "a")
    second, second_cert, _ = registered(authority, token, tmp_path / "b")
    answer = delete(authority, second, identity)
    assert answer.status_code == 403 and answer.json()["ErrorType"] == "AuthorizationError"
    assert aadsts(authority, second_cert) is None and aadsts(authority, first_cert) is None


def test_admin_disable_enable_delete(authority, token, tmp_path):
    device_id, cert, identity = registered(authority, token, tmp_path)
    disabled = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/disable")
    assert disabled.status_code == 200 and disabled.json()["device"]["state"] == "disabled"
    assert aadsts(authority, cert) == 135011
    refused = delete(authority, device_id, identity)  # a disabled device cannot act either
    assert refused.status_code == 403 and "135011" in refused.json()["Message"]
    enabled = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/enable")
    assert enabled.json()["device"]["state"] == "enabled"
    assert registry(authority).authenticate(cert).device_id == device_id
    listed = admin_call(authority.data_dir, "GET", "/admin/devices").json()["devices"]
    [mine] = [d for d in listed if d["deviceId"] == device_id]
    assert mine["state"] == "enabled" and "transportKey" not in mine
    gone = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/delete")
    assert gone.json()["device"]["state"] == "deleted"
    assert aadsts(authority, cert) == 50155
    again = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/enable")
    assert again.status_code == 404  # a deleted device stays deleted


def test_admin_needs_its_token(authority, token, tmp_path):
    device_id, cert, _ = registered(authority, token, tmp_path)
    wrong = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/disable",
                       token="not-the-token")
    assert wrong.status_code == 401
    bare = requests.post(f"{authority.device_admin}/{device_id}/disable", timeout=10)
    assert bare.status_code == 401
    assert requests.get(authority.device_admin, timeout=10).status_code == 401
    assert aadsts(authority, cert) is None
    unknown = admin_call(authority.data_dir, "POST", "/admin/devices/nope/disable")
    assert unknown.status_code == 404
    action = admin_call(authority.data_dir, "POST", f"/admin/devices/{device_id}/explode")
    assert action.status_code == 404 and aadsts(authority, cert) is None


def test_admin_file_is_private_and_holds_the_url(authority):
    path = authority.data_dir / "admin.json"
    assert path.stat().st_mode & 0o777 == 0o600
    admin = json.loads(path.read_text())
    assert admin["url"] == authority.authority and len(admin["token"]) >= 40
    assert admin["token"] not in authority.log_text()
    assert (authority.data_dir / "devices.json").stat().st_mode & 0o777 == 0o600


class _Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.peer, 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.20", "2001:db8::1"])
def test_admin_answers_loopback_peers_only(tmp_path, peer):
    from authbroker.authority.directory import Clients, Directory
    from authbroker.authority.minting import Minter, SigningKey
    from authbroker.authority.state import AuthorityState

    state = AuthorityState(Directory.demo(), Clients(),
                           Minter(SigningKey.load_or_create(tmp_path / "k.pem"), 3600),
                           devices=DeviceRegistry.in_memory())
    app = create_app(state)
    app[ADMIN_KEY].write(tmp_path, "https://127.0.0.1:1")
    admin = json.loads((tmp_path / "admin.json").read_text())
    headers = {"Authorization": f"Bearer {admin['token']}"}

    async def call(handler, remote: str, **match: str) -> int:
        request = make_mocked_request("POST", "/admin/devices", headers=headers, app=app,
                                      transport=_Transport(remote), match_info=match)
        return (await handler(request)).status

    async def main() -> None:
        assert await call(list_devices, "127.0.0.1") == 200
        assert await call(list_devices, "::1") == 200
        assert await call(list_devices, peer) == 403
        assert await call(act, peer, id="x", action="delete") == 403

    asyncio.run(main())


def test_deleting_a_device_drops_its_prts(tmp_path):
    async def main() -> None:
        async with serve(AuthorityConfig(data_dir=tmp_path, port=0)) as running:
            st = running.state
            http = requests.Session()
            http.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
            http.verify = str(running.pki.ca_cert)
            key = devicecrypto.new_rsa_key()
            user = st.directory.user("user@contoso.example")
            assert user is not None
            from authbroker.authority.devices import JoinRequest

            join = JoinRequest(devicecrypto.csr_der(key), join_body()["TransportKey"],
                               "Linux", "test", "box", 4)
            device, cert = st.devices.register(join, user_oid=user.oid,
                                               tenant_id=user.tenant_id)
            prt = st.prts.issue(PrtRecord(device.device_id, user.username, user.oid, b"k" * 32,
                                          ("pwd",), int(time.time())))
            assert st.prts.lookup(prt) is not None
            identity = write_identity(tmp_path / "dev", cert, key)
            answer = await asyncio.to_thread(
                http.delete, f"{running.authority}/EnrollmentServer/device/{device.device_id}",
                cert=identity, timeout=10, headers={"Connection": "close"})
            assert answer.status_code == 200, answer.text
            assert st.prts.lookup(prt) is None
            with pytest.raises(EntraError) as refused:
                st.devices.authenticate(cert)
            assert refused.value.code == 50155
            http.close()

    asyncio.run(main())


def test_join_then_certificate_authenticates_in_process(authority, token):
    key = devicecrypto.new_rsa_key()
    cert = certificate_of(post_join(authority, token, join_body(key)))
    device = registry(authority).authenticate(cert)
    assert device.enabled and device.tenant_id == authority.tenant_id
    assert device.transport_key.key_size == 2048
