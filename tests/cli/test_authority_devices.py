"""``authbroker authority device list|disable|enable|delete`` against a running authority (the
real CLI process, the real admin API), and what it says when no authority runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from authbroker.authority.device_ca import DeviceCA
from authbroker.authority.devices import DeviceRegistry
from authbroker.authority.errors import EntraError
from fixtures.drs import drs_token, registered

CLI = [sys.executable, "-m", "authbroker", "authority", "device"]


def device_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


@pytest.fixture(scope="module")
def token(authority) -> str:
    return drs_token(authority)


def code_of(data_dir: Path, cert) -> int | None:
    try:
        DeviceRegistry.in_data_dir(data_dir).authenticate(cert)
    except EntraError as exc:
        return exc.code
    return None


def test_list_disable_enable_delete(authority, token, tmp_path):
    device_id, cert, _ = registered(authority, token, tmp_path)
    data_dir = authority.data_dir
    listed = device_cli("list", "--output", "json", data_dir=data_dir)
    assert listed.returncode == 0, listed.stderr
    [mine] = [d for d in json.loads(listed.stdout)["devices"] if d["deviceId"] == device_id]
    assert mine["state"] == "enabled" and mine["deviceType"] == "Linux"
    text = device_cli("list", data_dir=data_dir)
    assert text.returncode == 0 and device_id in text.stdout and "DEVICE ID" in text.stdout

    disabled = device_cli("disable", device_id, data_dir=data_dir)
    assert (disabled.returncode, disabled.stdout) == (0, f"device {device_id}: disabled\n")
    assert code_of(data_dir, cert) == 135011
    enabled = device_cli("enable", device_id, "--output", "json", data_dir=data_dir)
    assert enabled.returncode == 0 and json.loads(enabled.stdout)["device"]["state"] == "enabled"
    assert code_of(data_dir, cert) is None
    deleted = device_cli("delete", device_id, data_dir=data_dir)
    assert deleted.returncode == 0 and deleted.stdout.endswith("deleted\n")
    assert code_of(data_dir, cert) == 50155
    again = device_cli("disable", device_id, data_dir=data_dir)
    assert again.returncode == 2 and "unknown or deleted" in again.stderr and again.stdout == ""


def test_options_may_come_before_the_subcommand(authority):
    done = subprocess.run([sys.executable, "-m", "authbroker", "authority", "--data-dir",
                           str(authority.data_dir), "device", "list", "--output", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "devices" in json.loads(done.stdout)


def test_no_authority_running_is_exit_1_with_a_hint(tmp_path):
    done = device_cli("list", data_dir=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "no authority has run" in done.stderr and "authbroker authority" in done.stderr
    with socket.socket() as s:  # a port nobody listens on: an authority that crashed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "admin.json").write_text(json.dumps({"url": f"https://127.0.0.1:{port}",
                                                     "token": "t"}))
    (tmp_path / "ca.pem").write_bytes(DeviceCA.ephemeral().pem())  # any CA certificate
    stale = device_cli("delete", "x", data_dir=tmp_path)
    assert stale.returncode == 1 and "cannot reach the authority" in stale.stderr
    assert '"t"' not in stale.stderr


def test_a_wrong_token_is_exit_1(authority, tmp_path):
    admin = json.loads((authority.data_dir / "admin.json").read_text())
    fake = tmp_path / "authority"
    fake.mkdir()
    (fake / "ca.pem").write_bytes((authority.data_dir / "ca.pem").read_bytes())
    (fake / "admin.json").write_text(json.dumps({"url": admin["url"], "token": "wrong"}))
    done = device_cli("list", data_dir=fake)
    assert done.returncode == 1 and "admin.json" in done.stderr
