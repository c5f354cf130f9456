"""Single sign-on across the family of Microsoft's public clients (FOCI), through Microsoft's
unmodified msal + pymsalruntime and our daemon on a private bus, at the local authority.

One person signs in once, through Azure CLI's client id; every other family member (Microsoft
Office, Microsoft Edge, Teams, and a member added in the authority's ``--clients`` file) then
gets its own tokens silently in a process of its own: the daemon's msal finds the family
refresh token in the account's partition. A registered client outside the family gets the
interaction-required error, whose message says how to sign it in. Each client is a separate
process (tests/fixtures/msal_client.py): pymsalruntime binds to the broker at import. Processes
of different client ids share a persisted msal cache file (``cache:`` step, as apps on
msal-extensions do), which is how a second app knows the broker's account for
``acquire_token_silent``; ``broker-default`` and ``default`` take the ``account: null`` +
default-account path instead.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1
from authbroker.client import BrokerClient
from authbroker.errors import BrokerStatusError
from fixtures.authority import AuthorityProcess, start_authority
from fixtures.daemon import DaemonProcess, daemon_env

if importlib.util.find_spec("pymsalruntime") is None:  # importing it would ping the bus
    pytest.skip("pymsalruntime is not installed", allow_module_level=True)

CLIENT_SCRIPT = Path(__file__).parents[1] / "fixtures" / "msal_client.py"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
OFFICE = "d3590ed6-52b3-4102-aeff-aad2292ab01c"
EDGE = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"
TEAMS = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"
ADDED = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"  # joins the family in the clients file
OUTSIDER = "0f1e2d3c-4b5a-4697-8877-665544332211"  # registered, not in the family
SCOPE = "https://storage.azure.com/.default"
USER = "user@contoso.example"
INTERACTION_REQUIRED = "Response_Status.Status_InteractionRequired"  # pymsalruntime's status 2

pytestmark = pytest.mark.timeout(240)


class Family:
    """The daemon, its authority and a shared msal cache file for the client processes."""

    def __init__(self, authority: AuthorityProcess, daemon: DaemonProcess, env: dict[str, str],
                 cache: Path) -> None:
        self.authority = authority
        self.daemon = daemon
        self.env = env
        self.cache = cache

    def client(self, client_id: str, *steps: str) -> list[dict[str, Any]]:
        """msal_client.py as ``client_id`` over the shared cache file; one dict per step."""
        env = dict(self.env, BROWSER="/bin/false %s")  # a non-broker fallback fails, loudly
        proc = subprocess.run(
            [sys.executable, str(CLIENT_SCRIPT), self.authority.authority,
             self.authority.tenant_id, client_id, SCOPE, f"cache:{self.cache}", *steps],
            capture_output=True, text=True, env=env, timeout=180,
        )
        assert proc.returncode == 0, f"client {client_id} failed:\n{proc.stderr[-3000:]}"
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return lines[1:]  # without the cache step's

    def auth(self, client_id: str,
             account: broker1.Account | None = None) -> broker1.AuthParameters:
        return broker1.AuthParameters(
            client_id=client_id, requested_scopes=(SCOPE,),
            authority=f"{self.authority.authority}/{self.authority.tenant_id}", account=account,
        )


def _clients_file(directory: Path) -> Path:
    clients = directory / "clients.json"
    clients.write_text(json.dumps({"allow_unregistered": False, "clients": [
        {"client_id": OUTSIDER, "redirect_uris": []},
        {"client_id": ADDED, "family": True},
    ]}))
    return clients


@pytest.fixture(scope="module")
def family_authority(tmp_path_factory, authority) -> Iterator[AuthorityProcess]:
    clients = _clients_file(tmp_path_factory.mktemp("family-sso"))
    with start_authority(clients.parent, "--clients", str(clients),
                         ca_from=authority) as running:
        yield running


def _family(authority: AuthorityProcess, bus: Any, tmp_path: Path) -> Iterator[Family]:
    env = daemon_env(authority, bus, tmp_path, AUTHBROKER_UI=None)
    with DaemonProcess(bus, env, tmp_path, "-v", store=tmp_path / "store.enc") as daemon:
        yield Family(authority, daemon, env, tmp_path / "msal-cache.json")


@pytest.fixture
def family(family_authority, dbus_session, secret_service, tmp_path: Path) -> Iterator[Family]:
    yield from _family(family_authority, dbus_session, tmp_path)


@pytest.fixture
def short_lived_family(authority, dbus_session, secret_service,
                       tmp_path: Path) -> Iterator[Family]:
    """Like ``family``, on an authority whose tokens live 3 s: every silent call refreshes."""
    clients = _clients_file(tmp_path)
    with start_authority(tmp_path, "--clients", str(clients), "--token-lifetime", "3",
                         ca_from=authority) as short:
        yield from _family(short, dbus_session, tmp_path)


def _served(result: dict[str, Any], client_id: str) -> None:
    """A token for ``client_id`` (its own ``appid``) from the broker, for the person."""
    assert result["error"] is None, result
    # msal marks where its tokens came from; pymsalruntime's own answer (broker-default) has
    # no such mark: it is the broker's
    direct = result["step"] == "broker-default"
    assert result["token_source"] == (None if direct else "broker"), result
    assert result["username"] == USER
    assert result["appid"] == client_id


def test_one_sign_in_serves_every_family_member_silently(family: Family) -> None:
    [signed_in] = family.client(AZURE_CLI, "select")
    _served(signed_in, AZURE_CLI)
    assert family.daemon.sign_ins() == 1

    # another family member, another process: acquire_token_silent for the broker's account
    [office] = family.client(OFFICE, "silent")
    assert office["accounts"] == 1
    _served(office, OFFICE)
    assert office["at"] != signed_in["at"]

    # account: null + the broker's default account: pymsalruntime's signin_silently, and
    # msal's acquire_token_interactive without a prompt (which tries it first)
    [edge] = family.client(EDGE, "broker-default")
    _served(edge, EDGE)
    [added] = family.client(ADDED, "default")  # a member the clients file added
    _served(added, ADDED)

    # a Broker1 client of our own, as a third-party one would ask: no account, the default one
    with BrokerClient(timeout=60) as client:
        teams = client.acquire_token_silently(family.auth(TEAMS))
        [account] = client.get_accounts(TEAMS)
        again = client.acquire_token_silently(family.auth(OFFICE, account))
    assert teams.access_token and teams.account is not None
    assert teams.account.username == USER
    assert again.access_token and again.account is not None
    assert again.account.home_account_id == account.home_account_id

    assert family.daemon.sign_ins() == 1  # one sign-in in all: no browser, no prompt


def test_a_client_outside_the_family_needs_its_own_sign_in(family: Family) -> None:
    [signed_in] = family.client(AZURE_CLI, "select")
    _served(signed_in, AZURE_CLI)
    advice = f"authbroker login --client-id {OUTSIDER}"

    # msal's acquire_token_silent answers None (the broker's error is for _with_error);
    # pymsalruntime's signin_silently (account: null + default) shows the broker's error
    silent, default = family.client(OUTSIDER, "silent", "broker-default")
    assert silent == {"step": "silent", "accounts": 1, "result": None}
    assert default["at"] is None and default["error"] == "broker_error", default
    assert default["broker_status"] == INTERACTION_REQUIRED
    assert "needs its own sign-in" in default["error_description"]
    assert advice in default["error_description"]

    with BrokerClient(timeout=60) as client:
        [account] = client.get_accounts(OUTSIDER)  # listed to it, as to everyone
        for asked in (None, account):
            with pytest.raises(BrokerStatusError) as err:
                client.acquire_token_silently(family.auth(OUTSIDER, asked))
            assert err.value.status == broker1.Status.INTERACTION_REQUIRED
            assert "needs its own sign-in" in err.value.context
            assert advice in err.value.context

    # the refused attempts revoked nothing: the family is still signed in
    [office] = family.client(OFFICE, "broker-default")
    _served(office, OFFICE)
    assert family.daemon.sign_ins() == 1


def test_family_members_refresh_in_turn_without_reuse_revocation(
    short_lived_family: Family,
) -> None:
    # 3-second tokens (less than msal's 5-minute margin): every silent call below redeems the
    # family refresh token, which the authority rotates, and revokes with the whole sign-in
    # if a redeemed one is replayed
    [signed_in] = short_lived_family.client(AZURE_CLI, "select")
    _served(signed_in, AZURE_CLI)
    seen = {signed_in["at"]}
    for turn, client_id in enumerate((OFFICE, AZURE_CLI, OFFICE, EDGE, AZURE_CLI, OFFICE)):
        if turn == 3:  # the chain as saved in the store is the current one too
            short_lived_family.daemon.restart()
        [silent] = short_lived_family.client(client_id, "silent")
        _served(silent, client_id)
        assert silent["at"] not in seen  # refreshed by the daemon, not a stale copy
        seen.add(silent["at"])
    assert short_lived_family.daemon.sign_ins() == 1
    # one token request per call (the sign-in's code, then one refresh each), none refused:
    # msal never tried a stale copy of the rotated family refresh token
    token_requests = re.findall(r"POST /\S+/oauth2/v2\.0/token (\d{3})",
                                short_lived_family.authority.log_text())
    assert token_requests == ["200"] * 7

