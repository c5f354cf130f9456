"""``authbroker install-service``: D-Bus activation (and a systemd user unit) for this user.

Writes two files that start ``<this interpreter> -m authbroker daemon`` on demand:

* ``com.microsoft.identity.broker1.service`` in ``$XDG_DATA_HOME/dbus-1/services/`` — the bus
  starts the broker when a client first calls it (pymsalruntime's import-time Ping included);
* ``authbroker-broker.service`` in ``$XDG_CONFIG_HOME/systemd/user/`` — a ``Type=dbus`` unit; on
  systemd desktops the bus delegates the start to it (``SystemdService=``), so the broker runs
  in the user's systemd session with its log in the journal.

``--prefix DIR`` writes a package-style tree instead (``DIR/share/dbus-1/services``,
``DIR/lib/systemd/user``). The files in ``packaging/`` are this module's output for
``/usr/bin/authbroker`` (a test keeps them in step).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
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


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Install D-Bus activation and a systemd user unit for 'authbroker daemon', "
        "so that clients (msal/pymsalruntime, authbroker) start the broker on demand.")
    parser.add_argument("--prefix", type=Path, metavar="DIR",
                        help="write DIR/share/dbus-1/services and DIR/lib/systemd/user instead "
                        "of this user's directories")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be written, write nothing")
    return parser


def run(args: argparse.Namespace) -> int:
    files = planned_files(args.prefix)
    for path, text in files.items():
        if args.dry_run:
            print(f"would write {path}:")
            print("    " + text.rstrip("\n").replace("\n", "\n    "))
        else:
            _write(path, text)
            print(f"wrote {path}")
    if args.dry_run:
        return 0
    if args.prefix is not None:
        print(f"installed under {args.prefix}; the broker is started as: "
              f"{shlex.join(daemon_argv())}")
        return 0
    _reload_systemd()
    for system_dir in SYSTEM_DBUS_SERVICES:
        if (system_dir / DBUS_SERVICE_FILE).exists():
            print(f"note: {system_dir / DBUS_SERVICE_FILE} (another broker, e.g. Microsoft's) "
                  "is now overridden for this user")
    print(f"the session bus now starts the broker on demand as: {shlex.join(daemon_argv())}")
    return 0


def _reload_systemd() -> None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return
    try:
        done = subprocess.run([systemctl, "--user", "daemon-reload"], capture_output=True,
                              timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    if done.returncode == 0:
        print("reloaded the systemd user manager (systemctl --user daemon-reload)")
