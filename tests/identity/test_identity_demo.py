"""`authbroker demo` runs offline, non-interactively, to the end, and prints no secrets."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from authbroker.azurite import find_azurite


def test_demo_runs_to_completion_without_printing_secrets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BROWSER"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-m", "authbroker", "demo"],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in range(1, 7):
        assert f"[{step}]" in done.stdout
    assert "signed in as user@contoso.example" in done.stdout
    assert "aud" in done.stdout and "https://storage.azure.com" in done.stdout
    assert "RS256 signature valid" in done.stdout
    if find_azurite() is not None:
        assert "downloaded hello.txt" in done.stdout
    # No JWT (three base64url parts starting with a JSON header), no refresh token, no password.
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]*", out)
    assert "refresh_token" not in out.lower()
    assert "Passw0rd!" not in out
