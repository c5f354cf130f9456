"""``authbroker device register | status | unregister``: this device's identity in the broker.

``register`` asks the broker (``RegisterDevice``) to sign in once (the browser, or a device code
shown here as ``authbroker login`` shows it), register the device with the authority's device
registration service and get a Primary Refresh Token; ``status`` shows the device id, tenant,
certificate expiry and PRT state; ``unregister`` deletes the device at the authority where it
can (``--local-only``: not at all) and the broker's keys, certificate and PRTs. Nothing printed
is a secret: the broker's answers hold none. Exit status: 0 done; ``status`` 2 when no device is
registered, or the authority refused it (disabled or deleted there, or its PRT refused); 1 an
error (a message and a hint on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import uuid
from typing import Any

from authbroker import broker1
from authbroker.cli.broker import _explain
from authbroker.client import BrokerClient
from authbroker.errors import AuthBrokerError

EXIT_OK, EXIT_FAILED, EXIT_NOT_REGISTERED = 0, 1, 2
_ACTIONS = ("register", "status", "unregister")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Register this device with the directory (one sign-in), show "
        "its state, or unregister it.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    register = actions.add_parser("register", help="register this device (one sign-in)")
    register.add_argument("--authority", default="", metavar="URL",
                          help="authority URL (default: the broker's)")
    register.add_argument("--tenant", default="", metavar="T",
                          help="the tenant to register in (default: the signed-in user's)")
    register.add_argument("--name", default="", metavar="NAME",
                          help="the device's display name (default: the host name)")
    register.add_argument("--device-code", action="store_true",
                          help="sign in with a device code shown here, not the browser")
    actions.add_parser("status", help="the registered device and its PRT (exit 2: none)")
    unregister = actions.add_parser("unregister", help="delete the device and its keys")
    unregister.add_argument("--local-only", action="store_true",
                            help="forget the device here only (the authority keeps it)")
    for sub in actions.choices.values():
        sub.add_argument("--output", choices=("text", "json"), default="text")
        sub.add_argument("--timeout", type=float, default=broker1.CLIENT_CALL_TIMEOUT_S,
                         metavar="SECONDS", help="give up waiting for the broker after this long")
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        with BrokerClient(timeout=args.timeout) as client:
            if args.action == "register":
                return _register(client, args)
            if args.action == "status":
                return _status(client, args)
            return _unregister(client, args)
    except AuthBrokerError as exc:
        print(f"authbroker device {args.action}: {_explain(exc, args)}", file=sys.stderr)
    return EXIT_FAILED


def _register(client: BrokerClient, args: argparse.Namespace) -> int:
    correlation_id = str(uuid.uuid4())
    try:
        device = client.register_device(authority=args.authority, tenant=args.tenant,
                                        device_name=args.name,
                                        use_device_code=args.device_code,
                                        correlation_id=correlation_id)
    except KeyboardInterrupt:  # Ctrl-C: end the broker's sign-in too, not just our wait
        with contextlib.suppress(AuthBrokerError), BrokerClient(timeout=5) as other:
            other.cancel_interactive_flow(correlation_id=correlation_id)
        raise
    _show({"device": device.to_wire()}, describe(device), args)
    return EXIT_OK


def _status(client: BrokerClient, args: argparse.Namespace) -> int:
    device = client.get_device_status()
    usable = device is not None and device.usable
    _show({"device": device.to_wire() if device else None, "usable": usable},
          describe(device), args)
    return EXIT_OK if usable else EXIT_NOT_REGISTERED


def _unregister(client: BrokerClient, args: argparse.Namespace) -> int:
    result = client.unregister_device(local_only=args.local_only)
    at_authority = ("deleted at the authority" if result.deleted_at_authority
                    else f"not deleted at the authority ({result.reason or 'no reason given'})")
    _show(result.to_wire(), [f"device unregistered here; {at_authority}"], args)
    return EXIT_OK


def _show(obj: dict[str, Any], lines: list[str], args: argparse.Namespace) -> None:
    if args.output == "json":
        print(json.dumps(obj, indent=2))
    else:
        print("\n".join(lines))


def _iso(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def prt_text(device: broker1.DeviceStatus) -> str:
    """The PRT's state in words (``active until …``, ``none``, ``refused`` …)."""
    if device.prt == "active":
        renewed = f", renewed {_iso(device.prt_renewed_at)}" if device.prt_renewed_at else ""
        return f"active until {_iso(device.prt_expires_on)}{renewed}"
    return device.prt


def summary(device: broker1.DeviceStatus | None) -> str:
    """One line: the device's state, id, certificate expiry and PRT (status, doctor)."""
    if device is None:
        return "not registered (register with: authbroker device register)"
    return (f"{device.state} {device.device_id} (tenant {device.tenant_id}), certificate "
            f"until {_iso(device.certificate_not_after)}, PRT {prt_text(device)}")


def describe(device: broker1.DeviceStatus | None) -> list[str]:
    """The device as the text output prints it, line by line."""
    if device is None:
        return ["device: not registered (register with: authbroker device register)"]
    lines = [f"device: {device.device_id} ({device.state})",
             f"  tenant: {device.tenant_id}",
             f"  authority: {device.authority}",
             f"  certificate expires: {_iso(device.certificate_not_after)}",
             f"  PRT: {prt_text(device)}"]
    if device.state == "locked":
        lines.append("  its keys are in the Secret Service, which is locked or lost them: "
                     "unlock the keyring (or register again)")
    elif device.state != "registered":
        lines.append("  the authority no longer accepts this device: register again "
                     "(authbroker device register)")
    return lines
