"""The ``native`` backend on Linux: msal + Microsoft's pymsalruntime, reaching OUR daemon over
D-Bus (pymsalruntime's own UI libraries are loaded but unused; the daemon owns the sign-in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.conftest import STORAGE_SCOPE, USERNAME

CLIENT = Path(__file__).with_name("native_client.py")


def _pymsalruntime_loads() -> bool:
    probe = "import ctypes, importlib.util; print(importlib.util.find_spec('pymsalruntime'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() != "None"


pytestmark = pytest.mark.skipif(not _pymsalruntime_loads(), reason="pymsalruntime not installed")


def run_client(authority, *steps: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, str(CLIENT), authority.authority, authority.tenant_id, STORAGE_SCOPE,
         *steps],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "AUTHBROKER_BACKEND": "native"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if '"backend": ' in line]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1]), proc.stdout


def test_native_backend_reaches_our_daemon(authority, secret_service, broker_daemon) -> None:
    report, stdout = run_client(authority)
    assert report["backend"] == "native", report
    assert report["upn"] == USERNAME
    assert report["username"] == USERNAME
    assert broker_daemon.sign_ins() == 1
    assert stdout == ""  # nothing on stdout on the broker path
    # a new process: the broker's default account, silently; PoP is refused, not downgraded
    report, _ = run_client(authority, "default", "quiet", "pop")
    assert report["backend"] == "native" and report["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1
    assert report["pop"].startswith("ClientAuthenticationError"), report["pop"]
    assert "Proof-of-Possession" in report["pop"]
