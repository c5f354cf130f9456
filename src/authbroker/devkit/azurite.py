"""Run Azurite's blob service locally as the protected resource for the demo and the tests.

Azurite (Microsoft's storage emulator, an npm package) runs with ``--oauth basic`` over HTTPS,
using the local authority's server certificate, in memory, without telemetry, on a port the
kernel picks. See docs local-authority.md §5.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ACCOUNT = "devstoreaccount1"
API_VERSION = "2025-11-05"  # newer than Azurite accepts otherwise; --skipApiVersionCheck too
_LISTENING = re.compile(r"successfully listens on https://127\.0\.0\.1:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite is missing or did not start."""


@dataclass
class Azurite:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def account_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"


def find_azurite() -> str | None:
    """Path of the ``azurite-blob`` command, or None.

    Looks at ``$AUTHBROKER_AZURITE``, the checkout's ``tests/node/node_modules`` (installed by
    ``make node-deps``), the current directory's, then ``PATH``.
    """
    explicit = os.environ.get("AUTHBROKER_AZURITE")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    rel = Path("tests/node/node_modules/.bin/azurite-blob")
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / rel
        if os.access(candidate, os.X_OK):
            return str(candidate)
    if shutil.which("node"):
        return shutil.which("azurite-blob")
    return None


@contextmanager
def run_azurite(cert: Path, key: Path, *, timeout: float = 30.0) -> Iterator[Azurite]:
    """Start Azurite's blob service with ``cert``/``key``; stop it on exit."""
    command = find_azurite()
    if command is None:
        raise AzuriteError("Azurite is not installed (run `make node-deps`)")
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [command, "--blobHost", "127.0.0.1", "--blobPort", "0", "--oauth", "basic",
             "--cert", str(cert), "--key", str(key), "--inMemoryPersistence",
             "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            port = _wait_listening(proc, out, timeout)
            yield Azurite(port, proc)
        finally:
            stop_process(proc)


def _wait_listening(proc: subprocess.Popen[bytes], out: IO[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out.seek(0)
        text = out.read().decode(errors="replace")
        match = _LISTENING.search(text)
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            raise AzuriteError(f"Azurite exited with {proc.returncode}: {text.strip()[-500:]}")
        time.sleep(0.1)
    raise AzuriteError(f"Azurite did not start within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child process (Azurite, the demo's authority); kill it if it lingers 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
