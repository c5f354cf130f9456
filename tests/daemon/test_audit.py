"""The audit log: the real daemon on a private bus with the local authority writes one line per
token it hands out or refuses (caller, client, account, how it was served), never a token or the
password; ``authbroker audit`` reads it back; the file stays within its bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import BrokerClient
from authbroker.daemon import audit
from authbroker.daemon.audit import AuditLog
from authbroker.daemon.handler import CallContext
from authbroker.errors import BrokerStatusError, site_tag
from fixtures.daemon import DaemonProcess, daemon_env

CLI_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # Azure CLI, a family client
EDGE_ID = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"  # Microsoft Edge, another family client
SCOPE = "https://storage.azure.com/.default"
AUTHORITY = "https://127.0.0.1/organizations"
USER = DEMO_USERS[0]


def auth(client_id: str = CLI_ID, **kw: Any) -> broker1.AuthParameters:
    return broker1.AuthParameters(client_id=client_id, requested_scopes=(SCOPE,),
                                  authority=AUTHORITY, **kw)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def running(dbus_session, authority, tmp_path: Path, started_daemons):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=USER,
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD)
    daemon = DaemonProcess(dbus_session, env, tmp_path, store=tmp_path / "store.enc")
    started_daemons.append(daemon)
    daemon.start()
    return daemon, env, tmp_path / "state" / "authbroker" / "broker" / "audit.jsonl"


def test_every_token_handed_out_or_refused_has_one_line_and_none_holds_a_secret(running):
    daemon, env, path = running
    with BrokerClient(timeout=60) as client:
        signed_in = client.acquire_token_interactively(auth(is_sign_in=True),
                                                       on_device_code=None)
        account = signed_in.account
        assert account is not None
        tokens = [signed_in, client.acquire_token_silently(auth(account=account))]
        tokens.append(client.acquire_token_silently(auth(account=account, force_refresh=True)))
        tokens.append(client.acquire_token_silently(auth(EDGE_ID, account=account)))
        stranger = broker1.Account("00000000-0000-0000-0000-00000000dead.tid", "x", "tid",
                                   "nobody@example.com")
        with pytest.raises(BrokerStatusError) as refused:
            client.acquire_token_silently(auth(account=stranger))
        assert refused.value.status == broker1.Status.INTERACTION_REQUIRED
    daemon.restart()  # the hot memo is gone: msal's cache serves from the store
    with BrokerClient(timeout=60) as client:
        tokens.append(client.acquire_token_silently(auth(account=account)))

    found = lines(path)
    served = [(e["method"], e["served"], e.get("via"), e["clientId"]) for e in found]
    assert served == [
        ("acquireTokenInteractively", "sign-in", None, CLI_ID),
        ("acquireTokenSilently", "cache", "memo", CLI_ID),
        ("acquireTokenSilently", "refresh", None, CLI_ID),
        ("acquireTokenSilently", "family", None, EDGE_ID),
        ("acquireTokenSilently", "error", None, CLI_ID),
        ("acquireTokenSilently", "cache", "msal", CLI_ID),
    ]
    for entry in found:
        assert entry["caller"]["pid"] == os.getpid()
        assert entry["caller"]["busName"].startswith(":")
        assert Path(entry["caller"]["executable"]).name.startswith("python")
        assert entry["scopes"] == [SCOPE]
    ok = [e for e in found if e["served"] != "error"]
    assert {(e["account"]["homeAccountId"], e["account"]["username"]) for e in ok} == {
        (account.home_account_id, USER)}
    [error] = [e for e in found if e["served"] == "error"]
    assert error["status"] == 2 and error["tag"] == site_tag("engine.silent.account")
    assert "no signed-in account" in error["error"]
    assert error["account"]["homeAccountId"] == stranger.home_account_id

    text = path.read_text()
    secrets = [DEMO_PASSWORD] + [t.access_token for t in tokens] + [
        t.id_token for t in tokens if t.id_token]
    assert len({t.access_token for t in tokens}) >= 3  # the sign-in, refresh, family are new
    for secret in secrets:
        assert secret and secret not in text
    for secret in (t.access_token for t in tokens):  # nor any part of a token's signature
        assert secret.rsplit(".", 1)[-1] not in text
    assert os.stat(path).st_mode & 0o777 == 0o600

    shown = subprocess.run([sys.executable, "-m", "authbroker", "audit", "--output", "json",
                            "--since", "1h"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == found
    table = subprocess.run([sys.executable, "-m", "authbroker", "audit"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert table.returncode == 0 and "cache (memo)" in table.stdout and USER in table.stdout
    [refusal] = [line for line in table.stdout.splitlines() if "error 2" in line]
    assert "no signed-in account" in refusal


def _ctx() -> CallContext:
    return CallContext("corr", ":1.7", os.getuid(), os.getpid())


def test_the_log_stays_within_its_bound_keeping_the_newest_lines(tmp_path: Path):
    path = tmp_path / "broker" / "audit.jsonl"
    log = AuditLog(path, max_bytes=4000)
    method = broker1.Method.ACQUIRE_TOKEN_SILENTLY
    for n in range(500):
        log.served(method, _ctx(), auth(f"client-{n}"), None, audit.MEMO, time.monotonic())
    log.close()
    rotated = audit.rotated(path)
    assert path.stat().st_size <= 4000 and rotated.stat().st_size <= 4000
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit.jsonl", "audit.jsonl.1"]
    kept = [e["clientId"] for e in audit.read(path)]
    assert kept == [f"client-{n}" for n in range(500 - len(kept), 500)]  # the newest, in order
    assert len(kept) > 10
    reopened = AuditLog(path, max_bytes=4000)  # a restarted daemon appends within the bound
    reopened.served(method, _ctx(), auth("after"), None, audit.CACHE, time.monotonic())
    reopened.close()
    assert [e["clientId"] for e in audit.read(path)][-1] == "after"
    assert path.stat().st_size <= 4000


def test_a_log_that_cannot_be_written_never_fails_a_call(tmp_path: Path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = AuditLog(blocker / "broker" / "audit.jsonl")  # its directory cannot exist
    error = BrokerStatusError(broker1.Status.INTERACTION_REQUIRED, "sign in", tag="t")
    for _ in range(3):
        log.refused(broker1.Method.ACQUIRE_TOKEN_SILENTLY, _ctx(), auth(), None, error,
                    time.monotonic())
    assert [r.levelname for r in caplog.records if "audit" in r.getMessage()] == ["WARNING"]


def test_since_keeps_the_lines_from_then_on(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write({"time": "2026-01-01T00:00:00.000Z", "served": "refresh"})
    log.write({"time": "2026-06-01T00:00:00.000Z", "served": "family"})
    log.close()
    with path.open("a") as fh:
        fh.write("{torn\n")
    since = audit.dt.datetime(2026, 3, 1, tzinfo=audit.dt.UTC)
    assert [e["served"] for e in audit.read(path, since)] == ["family"]
    assert [e["served"] for e in audit.read(path)] == ["refresh", "family"]


def test_repeated_calls_differ_in_time_id_and_duration_only(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    method = broker1.Method.ACQUIRE_TOKEN_SILENTLY
    account = broker1.Account("oid.tid", "oid", "tid", "someone@example.com")
    for cid in ("first", "second"):
        ctx = CallContext(cid, ":1.9", os.getuid(), os.getpid())
        log.served(method, ctx, auth(), account, audit.MEMO, time.monotonic() - 0.002)
    log.served(method, _ctx(), auth(), None, audit.REFRESH, time.monotonic())
    log.close()
    first, second, third = lines(path)
    assert first["correlationId"] == "first" and second["correlationId"] == "second"
    assert first["ms"] >= 2 and first["time"].endswith("Z")
    common = {k: v for k, v in first.items() if k not in ("time", "correlationId", "ms")}
    assert common == {k: v for k, v in second.items()
                      if k not in ("time", "correlationId", "ms")}
    assert common == {
        "method": "acquireTokenSilently", "clientId": CLI_ID, "scopes": [SCOPE],
        "authority": AUTHORITY, "served": "cache", "via": "memo",
        "caller": {"busName": ":1.9", "pid": os.getpid(),
                   "executable": os.readlink(f"/proc/{os.getpid()}/exe")},
        "account": {"homeAccountId": "oid.tid", "username": "someone@example.com"},
    }
    assert third["served"] == "refresh" and third["account"] is None and "via" not in third


def test_a_token_call_refused_before_the_core_has_its_line_too(running, dbus_session):
    """A malformed acquireTokenSilently is refused by the D-Bus service itself (status 6): it is
    still a refused token call, so it is audited, with the caller, and once."""
    from contextlib import closing

    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    daemon, env, path = running
    broker = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                         interface=broker1.INTERFACE)
    with closing(open_dbus_connection(dbus_session.address)) as conn:
        msg = new_method_call(broker, broker1.Method.ACQUIRE_TOKEN_SILENTLY.value, "sss",
                              ("0.0", "corr-malformed", "{not json"))
        reply = json.loads(conn.send_and_get_reply(msg, timeout=10).body[0])
    assert reply["brokerTokenResponse"]["error"]["status"] == broker1.Status.API_CONTRACT_VIOLATION
    found = lines(path)
    assert [(e["served"], e["status"], e["correlationId"]) for e in found] == [
        ("error", int(broker1.Status.API_CONTRACT_VIOLATION), "corr-malformed")]
    assert found[0]["caller"]["pid"] == os.getpid()
    assert found[0]["tag"] == site_tag("service.parse")
