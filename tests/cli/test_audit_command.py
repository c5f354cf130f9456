"""``authbroker audit``: reads the daemon's audit log (and its rotated file) as a table or JSON,
``--since`` a duration or an ISO time; run as a person runs it (``python -m authbroker``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from authbroker import broker1
from authbroker.cli import audit as cli_audit
from authbroker.daemon import audit
from authbroker.daemon.handler import CallContext

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    return subprocess.run([sys.executable, "-m", "authbroker", "audit", *args], env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("text", "back"), [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1h30m", 5400), ("1w", 604800),
])
def test_since_takes_a_duration_back_from_now(text: str, back: int):
    assert NOW - cli_audit.since(text, NOW) == dt.timedelta(seconds=back)


def test_since_takes_an_iso_time_local_when_it_names_no_zone():
    assert cli_audit.since("2026-12-03T10:00:00Z") == dt.datetime(2026, 12, 3, 10, tzinfo=dt.UTC)
    naive = cli_audit.since("2026-12-03T10:00:00")
    assert naive.tzinfo is not None and naive.replace(tzinfo=None) == dt.datetime(2026, 12, 3, 10)
    with pytest.raises(ValueError):
        cli_audit.since("yesterday")


def test_a_bad_since_is_a_usage_error(tmp_path: Path):
    done = run_cli(tmp_path, "--since", "soon")
    assert done.returncode == 2 and "--since" in done.stderr


def test_no_log_yet_is_empty_not_an_error(tmp_path: Path):
    assert json.loads(run_cli(tmp_path, "--output", "json").stdout) == []
    done = run_cli(tmp_path)
    assert done.returncode == 0 and "no tokens" in done.stdout


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    log = audit.AuditLog(path)
    for entry in entries:
        log.write(entry)
    log.close()


def test_lines_from_both_files_oldest_first_since_filters(tmp_path: Path):
    path = tmp_path / "state" / "authbroker" / "broker" / "audit.jsonl"
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).isoformat()
    _write(audit.rotated(path), [{"time": old, "served": "refresh", "clientId": "a"}])
    ctx = CallContext("corr", ":1.5", os.getuid(), os.getpid())
    auth = broker1.AuthParameters("b", ("scope/.default",))
    account = broker1.Account("oid.tid", "oid", "tid", "someone@example.com")
    log = audit.AuditLog(path)
    log.served(broker1.Method.ACQUIRE_TOKEN_SILENTLY, ctx, auth, account, audit.MEMO,
               time.monotonic())
    log.close()
    everything = json.loads(run_cli(tmp_path, "--output", "json").stdout)
    assert [e["clientId"] for e in everything] == ["a", "b"]
    recent = json.loads(run_cli(tmp_path, "--output", "json", "--since", "1h").stdout)
    assert [(e["clientId"], e["served"], e["via"]) for e in recent] == [("b", "cache", "memo")]
    assert recent[0]["caller"] == {"busName": ":1.5", "pid": os.getpid(),
                                   "executable": os.readlink(f"/proc/{os.getpid()}/exe")}
    table = run_cli(tmp_path, "--since", "1h").stdout.splitlines()
    assert table[0].split() == ["TIME", "SERVED", "CLIENT", "ID", "ACCOUNT", "CALLER", "SCOPES"]
    assert len(table) == 2 and "cache (memo)" in table[1] and "someone@example.com" in table[1]
    assert f"pid {os.getpid()}" in table[1] and "scope/.default" in table[1]


def test_file_reads_another_log(tmp_path: Path):
    other = tmp_path / "elsewhere.jsonl"
    _write(other, [{"time": NOW.isoformat(), "served": "family", "clientId": "c"}])
    done = run_cli(tmp_path, "--file", str(other), "--output", "json")
    assert [e["served"] for e in json.loads(done.stdout)] == ["family"]
