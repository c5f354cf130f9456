"""``authbroker install-service``: its options, and what it tells the user on stdout.

The files and their writing are :mod:`authbroker.daemon.install`'s; ``--dry-run`` shows them
without writing anything.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from authbroker.daemon import install


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
    if args.dry_run:
        for path, text in install.planned_files(args.prefix).items():
            print(f"would write {path}:")
            print("    " + text.rstrip("\n").replace("\n", "\n    "))
        return 0
    done = install.install(args.prefix)
    for path in done.written:
        print(f"wrote {path}")
    started_as = shlex.join(done.argv)
    if args.prefix is not None:
        print(f"installed under {args.prefix}; the broker is started as: {started_as}")
        return 0
    if done.systemd_reloaded:
        print("reloaded the systemd user manager (systemctl --user daemon-reload)")
    for path in done.overridden:
        print(f"note: {path} (another broker, e.g. Microsoft's) is now overridden for this user")
    print(f"the session bus now starts the broker on demand as: {started_as}")
    return 0
