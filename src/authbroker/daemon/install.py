"""D-Bus activation (and a systemd user unit) for this user: the files and their writing.

Writes two files that start ``<this interpreter> -m authbroker daemon`` on demand:

* ``com.microsoft.identity.broker1.service`` in ``$XDG_DATA_HOME/dbus-1/services/`` — the bus
  starts the broker when a client first calls it (pymsalruntime's import-time Ping included);
* ``authbroker-broker.service`` in ``$XDG_CONFIG_HOME/systemd/user/`` — a ``Type=dbus`` unit; on
  systemd desktops the bus delegates the start to it (``SystemdService=``), so the broker runs
  in the user's systemd session with its log in the journal.

``--prefix DIR`` writes a package-style tree instead (``DIR/share/dbus-1/services``,
``DIR/lib/systemd/user``). The files in ``packaging/`` are this module's output for
``/usr/bin/authbroker`` (a test keeps them in step). The command ``authbroker install-service``
(:mod:`authbroker.cli.install`) parses its options and tells the user what :func:`install` did;
nothing here prints.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from authbroker import broker1
from authbroker.config import config_dir, data_home

DBUS_SERVICE_FILE = f"{broker1.BUS_NAME}.service"
SYSTEMD_UNIT = "authbroker-broker.service"
SYSTEM_DBUS_SERVICES = (Path("/usr/share/dbus-1/services"),
                        Path("/usr/local/share/dbus-1/services"))
_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def daemon_argv() -> list[str]:
    """How this installation starts the daemon: the current interpreter, so its venv works."""
    return [sys.executable, "-m", "authbroker", "daemon"]


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` escaped, quoted when needed (systemd.service(5))."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dbus_service_text(argv: Sequence[str]) -> str:
    return (
        "# D-Bus activation of the authbroker Broker1 broker (written by "
        "'authbroker install-service')\n"
        "[D-BUS Service]\n"
        f"Name={broker1.BUS_NAME}\n"
        f"Exec={shlex.join(argv)}\n"
        f"SystemdService={SYSTEMD_UNIT}\n"
    )


def systemd_unit_text(argv: Sequence[str]) -> str:
    return (
        "# authbroker Broker1 broker, started on demand through D-Bus activation (written by\n"
        "# 'authbroker install-service'). Its log: journalctl --user -u authbroker-broker\n"
        "[Unit]\n"
        f"Description=authbroker authentication broker ({broker1.BUS_NAME})\n"
        "\n"
        "[Service]\n"
        "Type=dbus\n"
        f"BusName={broker1.BUS_NAME}\n"
        f"ExecStart={' '.join(_systemd_quote(a) for a in argv)}\n"
        "Restart=on-failure\n"
        "RestartSec=1\n"
    )


def target_dirs(prefix: Path | None) -> tuple[Path, Path]:
    """(D-Bus services directory, systemd user unit directory)."""
    if prefix is not None:
        return prefix / "share" / "dbus-1" / "services", prefix / "lib" / "systemd" / "user"
    return data_home() / "dbus-1" / "services", config_dir().parent / "systemd" / "user"


def planned_files(prefix: Path | None, argv: Sequence[str] | None = None) -> dict[Path, str]:
    argv = list(argv or daemon_argv())
    dbus_dir, unit_dir = target_dirs(prefix)
    return {dbus_dir / DBUS_SERVICE_FILE: dbus_service_text(argv),
            unit_dir / SYSTEMD_UNIT: systemd_unit_text(argv)}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Installed:
    """What :func:`install` did, for the command to tell the user."""

    written: tuple[Path, ...]  # the files written, in order
    argv: tuple[str, ...]  # how the bus (or systemd) now starts the broker
    systemd_reloaded: bool = False  # ``systemctl --user daemon-reload`` ran and succeeded
    #: system-wide service files for the same name (another broker) now overridden for this user
    overridden: tuple[Path, ...] = ()


def install(prefix: Path | None = None) -> Installed:
    """Write the activation files (under ``prefix``, or this user's directories).

    For this user's directories the systemd user manager is also asked to reload, and any
    system-wide service file for the same bus name is reported as overridden.
    """
    argv = tuple(daemon_argv())
    files = planned_files(prefix, argv)
    for path, text in files.items():
        _write(path, text)
    if prefix is not None:
        return Installed(written=tuple(files), argv=argv)
    return Installed(
        written=tuple(files), argv=argv, systemd_reloaded=_reload_systemd(),
        overridden=tuple(d / DBUS_SERVICE_FILE for d in SYSTEM_DBUS_SERVICES
                         if (d / DBUS_SERVICE_FILE).exists()),
    )


def _reload_systemd() -> bool:
    """``systemctl --user daemon-reload``, if there is a systemctl; True when it succeeded."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        done = subprocess.run([systemctl, "--user", "daemon-reload"], capture_output=True,
                              timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
