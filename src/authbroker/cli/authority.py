"""``authbroker authority``: its options, its one JSON line on stdout, its errors on stderr.

When ready it prints exactly one JSON line on stdout (authority URL, tenant, CA files, port,
device registration URLs, pid); everything else goes to stderr. Exit codes: 0 clean stop, 1
cannot start, 2 a configuration error. The serving is :func:`authbroker.authority.run`'s.

``authbroker authority device list | disable ID | enable ID | delete ID [--data-dir D]
[--output json]`` administers the devices of a running authority through its admin API (URL
and token from ``D/admin.json``, written at start). Exit codes: 0 done, 1 the authority is not
running or refused the call, 2 bad arguments or no such device.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from authbroker import authority, config
from authbroker.errors import AuthBrokerError

EXIT_OK, EXIT_CANNOT_START, EXIT_CONFIG = 0, 1, 2
EXIT_UNREACHABLE, EXIT_NO_DEVICE = 1, 2
DEVICE_ACTIONS = ("disable", "enable", "delete")
_DATA_DIR_HELP = "CA, TLS and signing keys (default: $XDG_STATE_HOME/authbroker/authority)"


def build_parser(prog: str = "authbroker authority") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run an offline, Entra-compatible identity provider on loopback HTTPS. "
        "Demo users: user@contoso.example, second@contoso.example, personal@outlook.example; "
        "password Passw0rd! (a well-known development credential).",
    )
    p.add_argument("--data-dir", type=Path, default=None, help=_DATA_DIR_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8443, help="port; 0 picks a free one (default 8443)")
    p.add_argument("--users", type=Path, default=None, help="users file (JSON); default: demo")
    p.add_argument("--clients", type=Path, default=None, help="clients file (JSON)")
    p.add_argument("--token-lifetime", type=int, default=3600, metavar="SECONDS",
                   help="access/id token lifetime (default 3600, minimum "
                   f"{authority.MIN_TOKEN_LIFETIME})")
    p.add_argument("--code-lifetime", type=int, default=300, metavar="SECONDS",
                   help="authorization code lifetime (default 300)")
    p.add_argument("--device-code-lifetime", type=int, default=900, metavar="SECONDS",
                   help="device code lifetime (default 900)")
    p.add_argument("--device-interval", type=int, default=1, metavar="SECONDS",
                   help="device code polling interval handed to clients (default 1)")
    p.add_argument("--prt-lifetime", type=int, default=14 * 24 * 3600, metavar="SECONDS",
                   help="primary refresh token lifetime (default 1209600, 14 days)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_device_parser(p)
    return p


def _add_device_parser(parent: argparse.ArgumentParser) -> None:
    sub = parent.add_subparsers(dest="subcommand", metavar="{device}")
    device = sub.add_parser("device", help="list, disable, enable or delete registered devices "
                            "of the running authority (its admin API)")
    actions = device.add_subparsers(dest="action", required=True)
    for name in ("list", *DEVICE_ACTIONS):
        action = actions.add_parser(name, help="list the devices" if name == "list"
                                    else f"{name} a device")
        if name != "list":
            action.add_argument("device_id", metavar="ID", help="the device id")
        # SUPPRESS: an option given before 'device' is not overwritten by this default
        action.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS,
                            help=_DATA_DIR_HELP)
        action.add_argument("--output", choices=("text", "json"), default="text")


def _print_ready(info: dict[str, Any]) -> None:
    """The command's contract: exactly one JSON line on stdout, flushed at once."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    print(f"authbroker authority: {text}", file=sys.stderr)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or config.state_dir() / "authority")


def _admin_request(data_dir: Path, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of an admin API call; OSError/ValueError when it cannot be made."""
    import requests

    from authbroker.authority.admin import ADMIN_FILE

    admin = json.loads((data_dir / ADMIN_FILE).read_text())
    with requests.Session() as http:
        http.trust_env = False  # loopback: no proxy, and the authority's own CA below
        try:
            answer = http.request(method, f"{admin['url']}{path}", timeout=10,
                                  headers={"Authorization": f"Bearer {admin['token']}"},
                                  verify=str(data_dir / "ca.pem"))
        except requests.RequestException as exc:
            raise OSError(f"cannot reach the authority at {admin['url']} "
                          f"({type(exc).__name__})") from None
    return answer.status_code, answer.json()


def _print_devices(devices: list[dict[str, Any]]) -> None:
    if not devices:
        print("no devices registered")
        return
    print(f"{'DEVICE ID':<36}  {'STATE':<8}  {'REGISTERED':<20}  {'TYPE':<8}  NAME")
    for d in devices:
        when = dt.datetime.fromtimestamp(int(d["created"]), dt.UTC).strftime("%Y-%m-%d %H:%M")
        print(f"{d['deviceId']:<36}  {d['state']:<8}  {when + ' UTC':<20}  "
              f"{d['deviceType'][:8]:<8}  {d['displayName']}")


def run_device(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    if args.action == "list":
        method, path = "GET", "/admin/devices"
    else:
        method, path = "POST", f"/admin/devices/{quote(args.device_id, safe='')}/{args.action}"
    try:
        status, body = _admin_request(data_dir, method, path)
    except FileNotFoundError:
        _err(f"no authority has run with --data-dir {data_dir} (no admin.json); start it "
             "with 'authbroker authority'")
        return EXIT_UNREACHABLE
    except (OSError, ValueError, KeyError) as exc:
        _err(f"{exc}; is 'authbroker authority --data-dir {data_dir}' running?")
        return EXIT_UNREACHABLE
    if status != 200:
        _err(str(body.get("error_description", f"HTTP {status}")))
        return EXIT_NO_DEVICE if status == 404 else EXIT_UNREACHABLE
    if args.output == "json":
        print(json.dumps(body))
    elif args.action == "list":
        _print_devices(body["devices"])
    else:
        print(f"device {body['device']['deviceId']}: {body['device']['state']}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if getattr(args, "subcommand", None) == "device":
        return run_device(args)
    cfg = authority.AuthorityConfig(
        data_dir=_data_dir(args),
        host=args.host, port=args.port, users_file=args.users, clients_file=args.clients,
        token_lifetime=args.token_lifetime, code_lifetime=args.code_lifetime,
        device_code_lifetime=args.device_code_lifetime, device_interval=args.device_interval,
        prt_lifetime=args.prt_lifetime,
    )
    try:
        return authority.run(cfg, on_ready=_print_ready)
    except AuthBrokerError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except OSError as exc:
        _err(f"cannot start: {exc.strerror or exc}")
        return EXIT_CANNOT_START
