"""``authbroker authority``: run the local Entra-compatible authority until SIGINT/SIGTERM.

When ready it prints exactly one JSON line on stdout (authority URL, tenant, CA files, port,
pid); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from authbroker import config
from authbroker.errors import AuthBrokerError

log = logging.getLogger("authbroker.authority")

MIN_TOKEN_LIFETIME = 600
ALLOW_SHORT_ENV = "AUTHBROKER_AUTHORITY_ALLOW_SHORT_TOKENS"


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
                   help=f"access/id token lifetime (default 3600, minimum {MIN_TOKEN_LIFETIME})")
    p.add_argument("--code-lifetime", type=int, default=300, metavar="SECONDS",
                   help="authorization code lifetime (default 300)")
    p.add_argument("--device-code-lifetime", type=int, default=900, metavar="SECONDS",
                   help="device code lifetime (default 900)")
    p.add_argument("--device-interval", type=int, default=1, metavar="SECONDS",
                   help="device code polling interval handed to clients (default 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


async def _main(cfg: object) -> int:
    from authbroker.authority.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(cfg) as running:  # type: ignore[arg-type]
        sys.stdout.write(json.dumps(running.info) + "\n")
        sys.stdout.flush()
        log.info("serving %s (tenant %s); stop with Ctrl-C", running.authority, running.tenant_id)
        await stop.wait()
        log.info("stopping")
    return 0


def run(args: argparse.Namespace) -> int:
    from authbroker.authority.server import AuthorityConfig

    short_ok = os.environ.get(ALLOW_SHORT_ENV) == "1"
    if args.token_lifetime < MIN_TOKEN_LIFETIME and not short_ok:
        print(f"authbroker authority: --token-lifetime must be at least {MIN_TOKEN_LIFETIME} s "
              f"(clients treat tokens with < 5 minutes left as expired); set {ALLOW_SHORT_ENV}=1 "
              "to allow shorter ones in tests", file=sys.stderr)
        return 2
    if args.token_lifetime < 1 or args.code_lifetime < 1 or args.device_interval < 1:
        print("authbroker authority: lifetimes and intervals must be positive", file=sys.stderr)
        return 2
    cfg = AuthorityConfig(
        data_dir=args.data_dir or config.state_dir() / "authority",
        host=args.host, port=args.port, users_file=args.users, clients_file=args.clients,
        token_lifetime=args.token_lifetime, code_lifetime=args.code_lifetime,
        device_code_lifetime=args.device_code_lifetime, device_interval=args.device_interval,
    )
    try:
        return asyncio.run(_main(cfg))
    except AuthBrokerError as exc:
        print(f"authbroker authority: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"authbroker authority: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return 1
