"""``authbroker demo``: its options, handed to the demo (:func:`authbroker.demo.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from authbroker import demo


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="``authbroker demo``: sign in offline against the local authority and use "
        "the token.",
    )
    parser.add_argument(
        "--interactive",
        action="store_true",
        help="open your real browser for the sign-in instead of the scripted user agent",
    )
    parser.add_argument(
        "--no-broker",
        action="store_true",
        help="sign in directly with azure-identity's InteractiveBrowserCredential, without the "
        "broker daemon (the default when dbus-daemon is not installed)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the authority's data directory (default: a fresh temporary directory)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    return demo.run(demo.DemoOptions(
        interactive=args.interactive, no_broker=args.no_broker, data_dir=args.data_dir,
        verbose=args.verbose,
    ))
