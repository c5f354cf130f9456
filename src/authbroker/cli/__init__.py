"""The ``authbroker`` command: a thin dispatcher over the ``authbroker.cli`` modules.

Each subcommand lives in a module of this package exposing ``build_parser(prog) ->
ArgumentParser`` and ``run(args) -> int``; these are the only modules that parse arguments or
print for a command, and each hands its options to its part (``authbroker.daemon.run``,
``authbroker.authority.run``, ``daemon.install``, the ``BrokerClient``). Only the chosen module
is imported, so ``authbroker --help`` and each command start quickly.
"""

from __future__ import annotations

import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "authority": ("authbroker.cli.authority", "run the local Entra-compatible authority"),
    "demo": ("authbroker.cli.demo", "sign in offline against the local authority, use the token"),
    "daemon": ("authbroker.cli.daemon", "run the Broker1 D-Bus broker daemon"),
    "install-service": ("authbroker.cli.install", "install D-Bus activation for this user"),
    "accounts": ("authbroker.cli.broker", "list the broker's accounts"),
    "login": ("authbroker.cli.broker", "sign in through the broker"),
    "token": ("authbroker.cli.broker", "print an access token from the broker"),
    "logout": ("authbroker.cli.broker", "forget an account in the broker"),
    "doctor": ("authbroker.cli.doctor", "check what sign-in needs here, and say what to fix"),
    "status": ("authbroker.cli.status", "the broker's accounts and the sign-ins waiting for you"),
    "audit": ("authbroker.cli.audit", "every token the broker handed out or refused, and to whom"),
    "device": ("authbroker.cli.device", "register this device, show or undo its registration"),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: authbroker COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'authbroker COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from authbroker import __version__

        print(f"authbroker {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"authbroker: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    parser = module.build_parser(f"authbroker {name}")
    args = parser.parse_args(rest)
    args.command = name
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
