"""Run Azurite's blob service locally as the protected resource for the demo and the tests.

Azurite (Microsoft's storage emulator, an npm package) runs with ``--oauth basic`` over HTTPS,
using the local authority's server certificate, in memory, without telemetry, on a port the
kernel picks. See docs/local-authority.md §5.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from authbroker import config
from authbroker.devkit.processes import Child, StartError

ACCOUNT = "devstoreaccount1"
API_VERSION = "2025-11-05"  # newer than Azurite accepts otherwise; --skipApiVersionCheck too
_LISTENING = re.compile(r"successfully listens on https://127\.0\.0\.1:(\d+)")


class AzuriteError(StartError):
    """Azurite is missing or did not start."""


@dataclass
class Azurite:
    port: int
    process: Child

    @property
    def account_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"


def find_azurite() -> str | None:
    """Path of the ``azurite-blob`` command, or None.

    Looks at ``$AUTHBROKER_AZURITE`` (the tests, the benchmarks and ``make demo`` set it to
    the checkout's ``tests/node/node_modules/.bin/azurite-blob``), then ``PATH``.
    """
    explicit = os.environ.get(config.AZURITE)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if shutil.which("node"):
        return shutil.which("azurite-blob")
    return None


@contextmanager
def run_azurite(cert: Path, key: Path, *, timeout: float = 30.0) -> Iterator[Azurite]:
    """Start Azurite's blob service with ``cert``/``key``; stop it on exit."""
    command = find_azurite()
    if command is None:
        raise AzuriteError("Azurite is not installed", hint="run `make node-deps`")
    with tempfile.TemporaryDirectory(prefix="ab-azurite-") as tmp:
        child = Child(
            [command, "--blobHost", "127.0.0.1", "--blobPort", "0", "--oauth", "basic",
             "--cert", str(cert), "--key", str(key), "--inMemoryPersistence",
             "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
            log=Path(tmp) / "azurite.log", stdout=Path(tmp) / "azurite.log", what="Azurite",
            grace=5.0, new_session=True,
        )  # fmt: skip
        with child:
            try:
                child.wait_until(lambda: _LISTENING.search(child.log_text()) is not None,
                                 timeout, error=AzuriteError, poll=0.1)
            except AzuriteError as exc:  # its log goes with the temporary directory: quote it
                raise AzuriteError(exc.message, hint=child.log_tail(500).strip()) from None
            match = _LISTENING.search(child.log_text())
            assert match is not None
            yield Azurite(int(match.group(1)), child)
