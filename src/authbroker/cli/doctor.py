"""``authbroker doctor [--output json]``: what sign-in needs here, each "ok" or what to do.

The checks are :mod:`authbroker.cli.checks` and the registered device's (``device``, from
``GetDeviceStatus``); this module prints them: one line each, "ok",
"warn" (sign-in still works) or "FAIL" (it does not), with the fix below. Exit status 1 when a
failed check blocks sign-in, else 0. Nothing printed is a secret.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from authbroker.cli.checks import INSTALL_FIX, Check, failed, run_all
from authbroker.errors import AuthBrokerError


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


def device_check(checks: list[Check]) -> Check:
    """The registered device (never a blocker: sign-in works without one)."""
    if not any(c.check == "broker-version" and c.ok for c in checks):
        return Check("device", False, "not asked: the broker did not answer", INSTALL_FIX)
    from authbroker.cli.device import summary
    from authbroker.client import BrokerClient

    try:
        with BrokerClient(timeout=10) as client:
            device = client.get_device_status()
    except AuthBrokerError as exc:
        return Check("device", False, f"the broker did not say: {exc}",
                     "see the broker's log (`journalctl --user -u authbroker-broker`)")
    if device is not None and not device.usable:
        return Check("device", False, summary(device),
                     "register again: authbroker device register")
    return Check("device", True, summary(device))


def run(args: argparse.Namespace) -> int:
    checks = run_all(args.store)
    checks.append(device_check(checks))
    if args.output == "json":
        print(json.dumps([check.as_json() for check in checks], indent=2))
    else:
        width = max(len(check.check) for check in checks)
        print("\n".join(_text(check, width) for check in checks))
    return 1 if any(failed(check) for check in checks) else 0
