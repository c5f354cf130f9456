"""`authbroker demo` runs offline, non-interactively, to the end, and prints no secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from authbroker.azurite import find_azurite


def _run_demo(tmp_path, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BROWSER"}
    env |= {"XDG_STATE_HOME": str(tmp_path / "state"), **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "authbroker", "demo"],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path,
    )  # fmt: skip


def _assert_no_secrets(out: str) -> None:
    # No JWT (base64url JSON header, payload, signature), no refresh token, no password.
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]*", out)
    assert "refresh_token" not in out.lower()
    assert "Passw0rd!" not in out


def test_demo_runs_to_completion_without_printing_secrets(tmp_path):
    if find_azurite() is None:
        pytest.skip("Azurite is not installed (run `make node-deps`)")
    done = _run_demo(tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in range(1, 7):
        assert f"[{step}]" in done.stdout
    assert "signed in as user@contoso.example" in done.stdout
    assert re.search(r"aud\s+https://storage\.azure\.com\n", done.stdout)
    assert "RS256 signature valid" in done.stdout
    assert "created container" in done.stdout and "downloaded hello.txt" in done.stdout
    _assert_no_secrets(out)


def test_demo_without_azurite_still_completes(tmp_path):
    done = _run_demo(tmp_path, AUTHBROKER_AZURITE=str(tmp_path / "no-azurite-here"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Azurite is not installed" in done.stdout
    assert "RS256 signature valid" in done.stdout
    assert "downloaded" not in done.stdout
    _assert_no_secrets(out)
