"""``authbroker status``: what the broker holds and waits for (accounts, sign-ins, callers).

One ``GetStatus`` call on our extension interface (``io.authbroker.BrokerUi1``): the accounts
(the default one marked ``*``), every sign-in still running, with who asked (client id, bus
name, pid) and, for a device-code sign-in, the URL and code a person must enter — so the
prompt reaches someone even when the calling app shows nothing — and the recent callers
(bus name, pid, executable, client ids, last call); then ``GetDeviceStatus``: the registered
device (its id, certificate expiry and PRT state). ``--output json`` prints the same as one
object. Errors: a message and a hint on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from authbroker import broker1
from authbroker.cli.device import summary
from authbroker.client import BrokerClient
from authbroker.errors import AuthBrokerError, BrokerProtocolError, BrokerStatusError

EXIT_OK, EXIT_FAILED = 0, 1


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Show the broker's accounts (the default one marked *) and the "
        "sign-ins waiting for a person, with their device-code URL and code.")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up waiting for the broker after this long (default: 10)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        with BrokerClient(timeout=args.timeout) as client:
            status = client.get_status()
            device = device_status(client)
    except AuthBrokerError as exc:
        hint = f"\n  hint: {exc.hint}" if exc.hint else ""
        print(f"authbroker status: {exc.message}{hint}", file=sys.stderr)
        return EXIT_FAILED
    if args.output == "json":
        print(json.dumps(as_json(status, device), indent=2))
    else:
        print("\n".join(as_text(status, device)))
    return EXIT_OK


def device_status(client: BrokerClient) -> broker1.DeviceStatus | None | str:
    """The registered device, None when there is none, or why the broker did not say (a
    broker without ``GetDeviceStatus``)."""
    try:
        return client.get_device_status()
    except (BrokerStatusError, BrokerProtocolError) as exc:
        return f"unknown ({exc})"


def as_json(status: broker1.StatusResult,
            device: broker1.DeviceStatus | None | str = None) -> dict[str, Any]:
    """The status as ``--output json`` prints it."""
    return {
        "device": device.to_wire() if isinstance(device, broker1.DeviceStatus) else None,
        "accounts": [{"username": a.username, "name": a.name, "homeAccountId": a.home_account_id,
                      "tenantId": a.realm, "environment": a.environment,
                      "default": a.home_account_id == status.default_account_id}
                     for a in status.accounts],
        "signIns": [_sign_in_json(s) for s in status.sign_ins],
        "recentCallers": [{"busName": c.sender, "pid": c.pid, "executable": c.executable,
                           "clientIds": list(c.client_ids), "calls": c.calls,
                           "lastMethod": c.last_method, "lastCallOn": _iso(c.last_call_on)}
                          for c in status.callers],
    }


def _sign_in_json(sign_in: broker1.SignInStatus) -> dict[str, Any]:
    code = sign_in.device_code
    return {
        "correlationId": sign_in.correlation_id,
        "clientId": sign_in.client_id,
        "caller": {"busName": sign_in.sender, "pid": sign_in.pid},
        "startedOn": _iso(sign_in.started_on),
        "deviceCode": None if code is None else {
            "verificationUri": code.verification_uri, "userCode": code.user_code,
            "expiresOn": _iso(code.expires_on), "message": code.message,
        },
    }


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def as_text(status: broker1.StatusResult,
            device: broker1.DeviceStatus | None | str = None) -> list[str]:
    """The status as the table output prints it, line by line."""
    lines = ["accounts:"]
    for a in status.accounts:
        marker = "*" if a.home_account_id == status.default_account_id else " "
        lines.append(f"  {marker} {a.username}  {a.realm}  {a.name}".rstrip())
    if not status.accounts:
        lines.append("  (none signed in; sign in with: authbroker login)")
    lines.append("sign-ins waiting:" if status.sign_ins else "sign-ins waiting: none")
    now = time.time()
    for s in status.sign_ins:
        pid = f" pid {s.pid}" if s.pid is not None else ""
        lines.append(f"  {s.correlation_id}: client {s.client_id}, caller {s.sender}{pid}, "
                     f"for {max(0, now - s.started_on):.0f} s")
        if s.device_code is not None:
            lines.append(f"    open {s.device_code.verification_uri} and enter the code "
                         f"{s.device_code.user_code}")
    lines.append("recent callers:" if status.callers else "recent callers: none")
    for c in status.callers:
        pid = f" pid {c.pid}" if c.pid is not None else ""
        program = f" {c.executable}" if c.executable else ""
        clients = f", clients {', '.join(c.client_ids)}" if c.client_ids else ""
        lines.append(f"  {c.sender}{pid}{program}: {c.calls} call(s), last {c.last_method} "
                     f"{max(0, now - c.last_call_on):.0f} s ago{clients}")
    lines.append(f"device: {device if isinstance(device, str) else summary(device)}")
    return lines
