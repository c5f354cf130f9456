"""Broker1 clients nobody here wrote, offline: Microsoft Edge's client id with the authority
such clients hard-code (``https://login.microsoftonline.com/common``), against the real daemon
with the routing setting on (as ``authbroker demo`` runs it) and the local authority, which
knows the family clients. Once through our ``BrokerClient`` speaking plain Broker1, once
through Microsoft's unmodified pymsalruntime."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1, config
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import BrokerClient
from authbroker.errors import BrokerStatusError
from fixtures.daemon import DaemonProcess, daemon_env

EDGE = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"
MICROSOFT = "https://login.microsoftonline.com/common"
SCOPE = "https://storage.azure.com/.default"
USER = DEMO_USERS[0]
CALLER = Path(__file__).with_name("pymsalruntime_caller.py")


def start_daemon(authority, bus, tmp_path: Path, **extra: str | None) -> DaemonProcess:
    env = daemon_env(authority, bus, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD, AUTHBROKER_UI="browser", **extra)
    if config.ROUTE_PUBLIC_CLOUD not in extra:
        assert env[config.ROUTE_PUBLIC_CLOUD] == "1"  # the devkit's private daemons route
    return DaemonProcess(bus, env, tmp_path, "-v", store=tmp_path / "store.enc")


def test_edge_over_broker1_gets_tokens_for_the_microsoft_authority(
        authority, dbus_session, tmp_path: Path, started_daemons) -> None:
    daemon = start_daemon(authority, dbus_session, tmp_path)
    started_daemons.append(daemon)
    daemon.start()
    auth = broker1.AuthParameters(client_id=EDGE, requested_scopes=(SCOPE,), authority=MICROSOFT)
    with BrokerClient(timeout=60) as client:
        signed_in = client.acquire_token_interactively(auth, on_device_code=None)
        assert signed_in.account is not None and signed_in.account.username == USER
        [account] = client.get_accounts(EDGE)
    with BrokerClient(timeout=60) as other:  # a new connection, silently, tenant-specific
        tenant = f"https://login.microsoftonline.com/{account.realm}"
        again = other.acquire_token_silently(broker1.AuthParameters(
            client_id=EDGE, requested_scopes=(SCOPE,), authority=tenant, account=account))
    assert again.access_token and again.account is not None
    assert again.account.home_account_id == account.home_account_id
    assert daemon.sign_ins() == 1


def test_edge_over_broker1_with_routing_off_names_the_routing_setting(
        authority, dbus_session, tmp_path: Path, started_daemons) -> None:
    # offline: every connection but the local authority's goes to a closed port
    daemon = start_daemon(authority, dbus_session, tmp_path, AUTHBROKER_ROUTE_PUBLIC_CLOUD=None,
                          HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1")
    started_daemons.append(daemon)
    daemon.start()
    auth = broker1.AuthParameters(client_id=EDGE, requested_scopes=(SCOPE,), authority=MICROSOFT)
    with BrokerClient(timeout=60) as client, pytest.raises(BrokerStatusError) as err:
        client.acquire_token_interactively(auth, on_device_code=None)
    assert err.value.status in (broker1.Status.NO_NETWORK,
                                broker1.Status.SERVER_TEMPORARILY_UNAVAILABLE)
    assert config.ROUTE_PUBLIC_CLOUD in err.value.context
    assert "login.microsoftonline.com" in err.value.context
    assert daemon.sign_ins() == 0  # nothing meant for Microsoft went anywhere else


@pytest.mark.timeout(240)
def test_edge_through_pymsalruntime_gets_tokens_for_the_microsoft_authority(
        authority, dbus_session, secret_service, tmp_path: Path, started_daemons) -> None:
    if importlib.util.find_spec("pymsalruntime") is None:
        pytest.skip("pymsalruntime is not installed")
    daemon = start_daemon(authority, dbus_session, tmp_path)
    started_daemons.append(daemon)
    daemon.start()

    def caller(*steps: str) -> list[dict[str, Any]]:
        done = subprocess.run([sys.executable, str(CALLER), MICROSOFT, EDGE, SCOPE, *steps],
                              env=dict(daemon.env or {}, BROWSER="/bin/false %s"),
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    [interactive] = caller("interactive")
    assert interactive["error"] is None, interactive
    assert interactive["token"] and interactive["username"] == USER
    [silent] = caller("silent")  # a fresh process: getAccounts + acquireTokenSilently
    assert silent["error"] is None, silent
    assert silent["token"] and silent["username"] == USER
    assert daemon.sign_ins() == 1
