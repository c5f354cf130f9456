"""`authbroker demo` runs offline, non-interactively, to the end, and prints no secrets: by
default through the broker daemon on a private bus, with --no-broker directly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from authbroker.devkit.azurite import find_azurite

needs_azurite = pytest.mark.skipif(
    find_azurite() is None, reason="Azurite is not installed (run `make node-deps`)"
)


def _run_demo(tmp_path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BROWSER", "AUTHBROKER_BACKEND")}
    env |= {"XDG_STATE_HOME": str(tmp_path / "state"), **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "authbroker", "demo", *args],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path,
    )  # fmt: skip


def _assert_no_secrets(out: str) -> None:
    # No JWT (base64url JSON header, payload, signature), no refresh token, no password.
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.[\w-]*", out)
    assert "refresh_token" not in out.lower()
    assert "Passw0rd!" not in out


def _assert_pop_step(out: str) -> None:
    """Step 8: the PoP call answered 200 for the user; the replayed SHR refused elsewhere."""
    assert "Proof-of-Possession" in out
    assert re.search(r"GET https://127\.0\.0\.1:\d+/resource/pop: 401 with a nonce challenge, "
                     r"then 200", out)
    assert re.search(r"SHR: m=GET u=127\.0\.0\.1:\d+ p=/resource/pop nonce=", out)
    assert "the resource says: user@contoso.example called" in out
    assert "token_type pop" in out
    assert re.search(r"the same SHR replayed at \S+/resource/pop/other: 401", out)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@needs_azurite
def test_demo_signs_in_through_the_broker_and_cleans_up(tmp_path):
    done = _run_demo(tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in range(1, 10):
        assert f"[{step}]" in done.stdout
    assert "private D-Bus session bus" in done.stdout
    assert "owns com.microsoft.identity.broker1" in done.stdout
    assert "backend: dbus; the daemon served acquireTokenInteractively x1" in done.stdout
    assert "signed in as user@contoso.example" in done.stdout
    assert re.search(r"aud\s+https://storage\.azure\.com\n", done.stdout)
    assert "RS256 signature valid" in done.stdout
    assert "created container" in done.stdout and "downloaded hello.txt" in done.stdout
    # the second credential: the broker's default account, silently, no browser
    assert "the daemon served acquireTokenSilently x1 from the default account" in done.stdout
    assert "no browser was opened this time" in done.stdout
    assert "Secret Service" not in out  # the key-file fallback warning stays in the daemon log
    _assert_pop_step(done.stdout)
    _assert_no_secrets(out)
    # everything stopped, temporary directories gone
    work = re.search(r"its store: (\S+)/store\.enc", done.stdout)
    bus = re.search(r"bus: unix:path=(\S+)/bus", done.stdout)
    assert work and bus
    assert not Path(work[1]).exists() and not Path(bus[1]).exists()
    assert _processes_mentioning(work[1]) == [] and _processes_mentioning(bus[1]) == []


@needs_azurite
def test_demo_without_the_broker_signs_in_directly(tmp_path):
    done = _run_demo(tmp_path, "--no-broker")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in range(1, 7):
        assert f"[{step}]" in done.stdout
    assert "InteractiveBrowserCredential" in done.stdout
    assert "D-Bus" not in done.stdout and "daemon" not in done.stdout
    assert "signed in as user@contoso.example" in done.stdout
    assert "RS256 signature valid" in done.stdout
    assert "created container" in done.stdout and "downloaded hello.txt" in done.stdout
    _assert_no_secrets(out)


def test_demo_without_azurite_still_completes(tmp_path):
    done = _run_demo(tmp_path, AUTHBROKER_AZURITE=str(tmp_path / "no-azurite-here"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Azurite is not installed" in done.stdout
    assert "RS256 signature valid" in done.stdout
    assert "no browser was opened this time" in done.stdout
    _assert_pop_step(done.stdout)
    assert "downloaded" not in done.stdout
    _assert_no_secrets(out)


def test_demo_without_dbus_daemon_falls_back_to_the_direct_sign_in(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    done = _run_demo(tmp_path, PATH=str(empty),
                     AUTHBROKER_AZURITE=str(tmp_path / "no-azurite-here"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "dbus-daemon is not installed" in done.stdout
    assert "signed in as user@contoso.example" in done.stdout
    assert "RS256 signature valid" in done.stdout
    _assert_no_secrets(out)
