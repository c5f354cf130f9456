"""``authbroker authority``: its options, its one JSON line on stdout, its errors on stderr.

When ready it prints exactly one JSON line on stdout (authority URL, tenant, CA files, port,
pid); everything else goes to stderr. Exit codes: 0 clean stop, 1 cannot start, 2 a
configuration error. The serving is :func:`authbroker.authority.run`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from authbroker import authority, config
from authbroker.errors import AuthBrokerError

EXIT_OK, EXIT_CANNOT_START, EXIT_CONFIG = 0, 1, 2


def build_parser(prog: str = "authbroker authority") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run an offline, Entra-compatible identity provider on loopback HTTPS. "
        "Demo users: user@contoso.example, second@contoso.example, personal@outlook.example; "
        "password Passw0rd! (a well-known development credential).",
    )
    p.add_argument("--data-dir", type=Path, default=None,
                   help="CA, TLS and signing keys (default: $XDG_STATE_HOME/authbroker/authority)")
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
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _print_ready(info: dict[str, Any]) -> None:
    """The command's contract: exactly one JSON line on stdout, flushed at once."""
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    print(f"authbroker authority: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    cfg = authority.AuthorityConfig(
        data_dir=args.data_dir or config.state_dir() / "authority",
        host=args.host, port=args.port, users_file=args.users, clients_file=args.clients,
        token_lifetime=args.token_lifetime, code_lifetime=args.code_lifetime,
        device_code_lifetime=args.device_code_lifetime, device_interval=args.device_interval,
    )
    try:
        return authority.run(cfg, on_ready=_print_ready)
    except AuthBrokerError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except OSError as exc:
        _err(f"cannot start: {exc.strerror or exc}")
        return EXIT_CANNOT_START
