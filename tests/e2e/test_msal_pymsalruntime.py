"""THE acceptance tests: Microsoft's unmodified msal + pymsalruntime (and azure-identity-broker)
get tokens from the local authority through our daemon on a private session bus.

Each test has a private dbus-daemon, a throwaway unlocked gnome-keyring (pymsalruntime needs a
Secret Service; the daemon keeps its store key there), and the daemon process
(``python -m authbroker daemon``) with ``AUTHBROKER_AUTHORITY`` and the scripted user agent as
``$BROWSER``, started before the client process imports msal. Clients run as subprocesses
(tests/fixtures/msal_client.py) because pymsalruntime binds to the broker at import.
azure-identity-broker 1.3.0 would replace our azure.identity.broker in .venv, so it runs from a
separate cached venv, tests/.venv-microsoft, built once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1
from authbroker.client import BrokerClient
from authbroker.daemon.persistence import AccountStore
from authbroker.devkit.useragent import device_login
from authbroker.errors import BrokerStatusError
from fixtures.authority import AuthorityProcess, start_authority
from fixtures.daemon import DaemonProcess, daemon_env
from fixtures.desktop_notifications import NotificationServer

if importlib.util.find_spec("pymsalruntime") is None:  # importing it would ping the bus
    pytest.skip("pymsalruntime is not installed", allow_module_level=True)

HERE = Path(__file__).parent
CLIENT_SCRIPT = HERE.parent / "fixtures" / "msal_client.py"
MS_VENV = HERE.parent / ".venv-microsoft"
MS_VENV_SCRIPT = HERE.parents[1] / "scripts" / "microsoft-venv.sh"
CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # azure-identity's default (Azure CLI)
SCOPE = "https://storage.azure.com/.default"
USER = "user@contoso.example"

pytestmark = pytest.mark.timeout(240)


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@pytest.fixture(scope="session")
def microsoft_python() -> Path:
    """Python of a venv with Microsoft's azure-identity-broker, msal and pymsalruntime.

    ``make test`` builds it (scripts/microsoft-venv.sh); a direct pytest run builds it here.
    """
    with open(HERE.parent / ".venv-microsoft.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(
            [str(MS_VENV_SCRIPT), str(MS_VENV)], capture_output=True, text=True, timeout=600,
            env=dict(os.environ, PYTHON=sys.executable),
        )
    assert build.returncode == 0, f"cannot build {MS_VENV}:\n{build.stderr[-2000:]}"
    return MS_VENV / "bin" / "python"


class Setup:
    def __init__(self, authority: AuthorityProcess, daemon: DaemonProcess,
                 env: dict[str, str]) -> None:
        self.authority = authority
        self.daemon = daemon
        self.env = env

    def client(self, *steps: str, python: str | Path = sys.executable) -> list[dict[str, Any]]:
        """Run msal_client.py with ``steps``; one dict per step."""
        env = dict(self.env, BROWSER="/bin/false %s")  # a non-broker fallback fails, loudly
        proc = subprocess.run(
            [str(python), str(CLIENT_SCRIPT), self.authority.authority,
             self.authority.tenant_id, CLIENT_ID, SCOPE, *steps],
            capture_output=True, text=True, env=env, timeout=180,
        )
        assert proc.returncode == 0, f"client failed:\n{proc.stderr[-3000:]}"
        return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    def dbus_client(self) -> BrokerClient:
        return BrokerClient(timeout=60)

    def auth(self, account: broker1.Account | None = None, **kwargs: Any) -> broker1.AuthParameters:
        return broker1.AuthParameters(
            client_id=CLIENT_ID,
            requested_scopes=(SCOPE,),
            authority=f"https://127.0.0.1/{self.authority.tenant_id}",
            account=account,
            is_sign_in=account is None,
            **kwargs,
        )


def _setup(authority: AuthorityProcess, bus: Any, tmp_path: Path,
           **extra: str) -> Iterator[Setup]:
    env = daemon_env(authority, bus, tmp_path, **{"AUTHBROKER_UI": None, **extra})
    with DaemonProcess(bus, env, tmp_path, "-v", store=tmp_path / "store.enc") as daemon:
        yield Setup(authority, daemon, env)


@pytest.fixture
def broker(authority, dbus_session, secret_service, tmp_path: Path) -> Iterator[Setup]:
    yield from _setup(authority, dbus_session, tmp_path)


@pytest.fixture
def short_lived_broker(authority, dbus_session, secret_service, tmp_path: Path) -> Iterator[Setup]:
    """Like ``broker``, on an authority whose tokens live 3 s."""
    with start_authority(tmp_path, "--token-lifetime", "3", ca_from=authority) as short:
        yield from _setup(short, dbus_session, tmp_path)


@pytest.fixture
def device_code_broker(authority, dbus_session, secret_service, tmp_path: Path) -> Iterator[Setup]:
    """Like ``broker``, on a machine where no browser can open: the device-code flow."""
    yield from _setup(authority, dbus_session, tmp_path, AUTHBROKER_UI="device-code", BROWSER="")


def test_select_account_then_default_account_in_a_fresh_process(broker: Setup) -> None:
    [select, accounts] = broker.client("select", "accounts")
    assert select["error"] is None, select
    assert select["token_source"] == "broker"
    assert select["username"] == USER
    assert select["at"] and select["expires_in"] > 600
    assert accounts["accounts"] == [{"username": USER, "source": "broker"}]

    # a fresh process knows no account until it asks the broker: the default-account path
    # (no prompt) is getAccounts + acquireTokenSilently, answered from the daemon's cache.
    [default] = broker.client("default")
    assert default["error"] is None, default
    assert default["token_source"] == "broker"
    assert default["username"] == USER
    assert default["at"] == select["at"]

    with broker.dbus_client() as client:
        [account] = client.get_accounts(CLIENT_ID)
        assert account.username == USER
        assert account.realm == broker.authority.tenant_id


def test_silent_after_the_access_token_expired(short_lived_broker: Setup) -> None:
    first, _, later = short_lived_broker.client("select", "sleep:4", "silent")
    assert first["error"] is None and first["token_source"] == "broker", first
    assert later["accounts"] == 1
    assert later["error"] is None, later
    assert later["token_source"] == "broker"
    assert later["username"] == USER
    assert later["at"] != first["at"]  # refreshed by the daemon, not a stale copy


def test_cae_app_gets_a_cp1_token_after_a_plain_one_and_back(broker: Setup) -> None:
    # msal with client_capabilities=["CP1"] (what azure-identity's enable_cae does) hands the
    # broker the capabilities as claims; the daemon keeps CAE tokens apart from plain ones.
    select, cae, plain = broker.client("select", "cae", "default")
    assert select["error"] is None and select["xms_cc"] is None, select
    assert cae["error"] is None, cae
    assert cae["token_source"] == "broker" and cae["username"] == USER
    assert cae["xms_cc"] == ["CP1"]
    assert plain["error"] is None and plain["xms_cc"] is None, plain
    assert plain["at"] == select["at"]  # the plain token, still cached, untouched by CAE


def test_azure_identity_broker_credential(broker: Setup, microsoft_python: Path) -> None:
    [result] = broker.client("credential", python=microsoft_python)
    assert result["at"]
    assert result["expires_on"] > time.time() + 600
    # the credential's token is the daemon's: the daemon now holds that very token
    with broker.dbus_client() as client:
        token = client.acquire_token_silently(broker.auth())
    assert sha(token.access_token) == result["at"]


def test_remove_account_and_restart_over_dbus(broker: Setup) -> None:
    [select] = broker.client("select")
    assert select["token_source"] == "broker", select
    broker.daemon.restart()  # the store (key in the Secret Service) survives a restart
    with broker.dbus_client() as client:
        [account] = client.get_accounts(CLIENT_ID)
        assert account.username == USER
        token = client.acquire_token_silently(broker.auth(account))
        assert sha(token.access_token) == select["at"]
        client.remove_account(account, CLIENT_ID)
        assert client.get_accounts(CLIENT_ID) == []
        with pytest.raises(BrokerStatusError) as err:
            client.acquire_token_silently(broker.auth(account))
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
    broker.daemon.restart()
    with broker.dbus_client() as client:
        assert client.get_accounts(CLIENT_ID) == []
        with pytest.raises(BrokerStatusError) as err:
            client.acquire_token_silently(broker.auth())
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED


def test_tokens_never_reach_the_log_or_the_store_bytes(broker: Setup) -> None:
    [select] = broker.client("select")
    assert select["token_source"] == "broker", select
    with broker.dbus_client() as client:
        token = client.acquire_token_silently(broker.auth(force_refresh=True))
    broker.daemon.stop()
    store = broker.daemon.store
    records = AccountStore(store)  # decrypts with the key from the Secret Service
    secrets = [token.access_token, token.id_token]
    for hid in records.open().accounts:
        for state in (records.read_tokens(hid) or {}).values():
            cache = json.loads(state)
            for kind in ("RefreshToken", "AccessToken", "IdToken"):
                secrets += [entry["secret"] for entry in cache.get(kind, {}).values()]
    records.close()
    assert len(secrets) >= 5
    raw = b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))
    log = broker.daemon.log.read_text()
    assert "interactive" in log  # the log is real and mentions the calls
    for secret in secrets:
        assert secret.encode() not in raw
        assert secret[-32:] not in log
    assert b"contoso" not in raw


def test_device_code_sign_in_read_from_the_desktop_notification(
    device_code_broker: Setup,
) -> None:
    approved: list[str] = []

    def person_reads(summary: str, body: str) -> None:
        match = re.search(r"Open (\S+) and enter the code (\S+)", body)
        assert match, body
        device_login(match.group(1), match.group(2), "second@contoso.example", "Passw0rd!")
        approved.append(match.group(2))

    bus = device_code_broker.daemon.bus
    with NotificationServer(bus.address, person_reads) as notifications:
        [select] = device_code_broker.client("select")
    assert select["error"] is None, select
    assert select["token_source"] == "broker"
    assert select["username"] == "second@contoso.example"
    assert len(notifications.shown) == 1 and approved
    assert approved[0] in device_code_broker.daemon.log.read_text()  # the prompt is logged too


def test_two_accounts_default_account_is_the_latest_sign_in(broker: Setup) -> None:
    [first] = broker.client("select")
    assert first["username"] == USER, first
    broker.daemon.env["AUTHBROKER_UA_USERNAME"] = "second@contoso.example"  # the next person
    broker.daemon.restart()
    [second] = broker.client("select")
    assert second["username"] == "second@contoso.example", second
    with broker.dbus_client() as client:
        assert len(client.get_accounts(CLIENT_ID)) == 2
    # with two accounts pymsalruntime asks for "account: null"; the daemon answers for the
    # default one, the latest sign-in, without any UI (the user agent would now fail: no
    # browser may be needed)
    broker.daemon.env["BROWSER"] = "/bin/false %s"
    broker.daemon.restart()
    [default] = broker.client("default")
    assert default["error"] is None, default
    assert default["token_source"] == "broker"
    assert default["username"] == "second@contoso.example"
    assert default["at"] == second["at"]
    # the person chooses the first account as the default (authbroker's own interface):
    # Microsoft's stack, asking for "account: null" again, now gets that one, still without UI
    with broker.dbus_client() as client:
        client.set_default_account(username=USER)
    [chosen] = broker.client("default")
    assert chosen["error"] is None, chosen
    assert chosen["token_source"] == "broker"
    assert chosen["username"] == USER
