"""``authbroker doctor [--output json]``: what sign-in needs here, each "ok" or what to do.

The checks are :mod:`authbroker.cli.checks`; this module prints them: one line each, "ok",
"warn" (sign-in still works) or "FAIL" (it does not), with the fix below. Exit status 1 when a
failed check blocks sign-in, else 0. Nothing printed is a secret.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from authbroker.cli.checks import Check, failed, run_all


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Check the session bus, the broker, its key and store, the routing, the "
        "authority's TLS trust, the sign-in UI and the plugin's backends.",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="json: a list of {check, ok, detail, fix}")
    parser.add_argument("--store", type=Path, metavar="PATH",
                        help="the daemon's store file (default: "
                        "$XDG_STATE_HOME/authbroker/broker/store.enc)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _text(check: Check, width: int) -> str:
    mark = "ok" if check.ok else ("FAIL" if check.blocks else "warn")
    line = f"{mark:<4}  {check.check:<{width}}  {check.detail}"
    return f"{line}\n{'':<{width + 6}}fix: {check.fix}" if check.fix and not check.ok else line


def run(args: argparse.Namespace) -> int:
    checks = run_all(args.store)
    if args.output == "json":
        print(json.dumps([check.as_json() for check in checks], indent=2))
    else:
        width = max(len(check.check) for check in checks)
        print("\n".join(_text(check, width) for check in checks))
    return 1 if any(failed(check) for check in checks) else 0
