"""A Primary Refresh Token serves a client id outside the family: Microsoft's unmodified msal +
pymsalruntime, our daemon on a private bus, the local authority (issue 10's acceptance test).

The person signs in once through Azure CLI's client id, and registers the device (the daemon's
``RegisterDevice``: one sign-in, the join, a PRT). A client id the authority's ``--clients``
file registers with ``"family": false`` then gets tokens silently in a process of its own
(msal's ``acquire_token_silent`` over a shared msal cache file, and pymsalruntime's
``signin_silently`` with the broker's default account): one PRT exchange at the authority, no
browser, no per-app refresh token. Its access token carries the device's ``deviceid``; the
daemon's audit line says ``served: prt``. The same client asked before the registration gets
nothing: without the PRT a non-family client needs its own sign-in.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authbroker.client import BrokerClient
from fixtures.authority import AuthorityProcess, start_authority
from fixtures.daemon import DaemonProcess, daemon_env

if importlib.util.find_spec("pymsalruntime") is None:  # importing it would ping the bus
    pytest.skip("pymsalruntime is not installed", allow_module_level=True)

CALLER = Path(__file__).parent / "prt_msal_caller.py"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
APP = "5c7f3a1e-9b2d-4e6f-8a0c-1d2e3f4a5b6c"  # registered, NOT in the family
SCOPE = "https://storage.azure.com/.default"
USER = "user@contoso.example"

pytestmark = pytest.mark.timeout(240)


class Setup:
    def __init__(self, authority: AuthorityProcess, daemon: DaemonProcess, env: dict[str, str],
                 tmp: Path) -> None:
        self.authority = authority
        self.daemon = daemon
        self.env = env
        self.cache = tmp / "msal-cache.json"
        self.audit = tmp / "state" / "authbroker" / "broker" / "audit.jsonl"

    def client(self, client_id: str, *steps: str) -> list[dict[str, Any]]:
        """The caller as ``client_id`` over the shared msal cache file; one dict per step."""
        env = dict(self.env, BROWSER="/bin/false %s")  # a non-broker fallback fails, loudly
        proc = subprocess.run(
            [sys.executable, str(CALLER), self.authority.authority, self.authority.tenant_id,
             client_id, SCOPE, f"cache:{self.cache}", *steps],
            capture_output=True, text=True, env=env, timeout=180)
        assert proc.returncode == 0, f"client {client_id} failed:\n{proc.stderr[-3000:]}"
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return lines[1:]  # without the cache step's

    def served(self, client_id: str) -> list[str]:
        """How the daemon served ``client_id``'s token calls, from its audit lines."""
        lines = self.audit.read_text().splitlines() if self.audit.exists() else []
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e["served"] for e in entries if e.get("clientId") == client_id]


@pytest.fixture(scope="module")
def prt_authority(tmp_path_factory, authority) -> Iterator[AuthorityProcess]:
    directory = tmp_path_factory.mktemp("prt-pymsalruntime")
    clients = directory / "clients.json"
    clients.write_text(json.dumps({"clients": [
        {"client_id": APP, "family": False, "redirect_uris": []}]}))
    with start_authority(directory, "--clients", str(clients), ca_from=authority) as running:
        yield running


@pytest.fixture
def setup(prt_authority, dbus_session, secret_service, tmp_path: Path) -> Iterator[Setup]:
    env = daemon_env(prt_authority, dbus_session, tmp_path, AUTHBROKER_UI=None)
    with DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc") as daemon:
        yield Setup(prt_authority, daemon, env, tmp_path)


def test_a_non_family_client_gets_a_silent_token_from_the_prt(setup: Setup) -> None:
    [signed_in] = setup.client(AZURE_CLI, "select")  # the one app the person signed in to
    assert signed_in["error"] is None and signed_in["username"] == USER, signed_in
    assert signed_in["deviceid"] is None  # no device yet
    [before] = setup.client(APP, "silent")  # outside the family, no PRT: nothing silent
    assert before == {"step": "silent", "accounts": 1, "result": None}

    with BrokerClient(timeout=120) as client:
        [account] = client.get_accounts(AZURE_CLI)
        device = client.register_device(home_account_id=account.home_account_id,
                                        on_device_code=None)
    assert device.prt == "active", device
    sign_ins = setup.daemon.sign_ins()

    silent, default = setup.client(APP, "silent", "broker-default")
    for result in (silent, default):
        assert result["error"] is None, result
        assert result["username"] == USER and result["appid"] == APP, result
        assert result["deviceid"] == device.device_id, result
    assert silent["token_source"] == "broker" and silent["accounts"] == 1
    assert setup.daemon.sign_ins() == sign_ins  # no browser, no prompt

    served = setup.served(APP)
    assert "prt" in served, served  # one exchange of the PRT at the authority ...
    first = served.index("prt")
    assert served[:first] == ["error"], served  # (the refusal before the registration)
    assert set(served[first + 1:]) <= {"cache", "prt"}, served  # ... then its own tokens
