"""``authbroker daemon``: its options, handed to the daemon's composition root.

The daemon itself (name first, core built after, signals, exit codes 0/1/2/3) is
:func:`authbroker.daemon.run`; this module only parses the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from authbroker import config, daemon


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the per-user Broker1 broker (com.microsoft.identity.broker1) on the "
        "D-Bus session bus. Normally started by D-Bus activation; see "
        "'authbroker install-service'.",
    )
    parser.add_argument("--store", type=Path, metavar="PATH",
                        help="the encrypted store file (default: "
                        "$XDG_STATE_HOME/authbroker/broker/store.enc)")
    parser.add_argument("--authority", metavar="URL",
                        help="the authority for requests naming its host without a port, or "
                        f"none (default: ${config.AUTHORITY} or 'authority' in the config file)")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="release the name and exit after this long without calls "
                        "(for D-Bus activation)")
    parser.add_argument("--bus", metavar="ADDRESS",
                        help="D-Bus address to serve on (default: the bus that activated us, "
                        "else the session bus)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    return daemon.run(daemon.DaemonOptions(
        store=args.store, authority=args.authority, idle_exit=args.idle_exit, bus=args.bus,
        verbose=args.verbose,
    ))
