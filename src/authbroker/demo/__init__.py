"""``authbroker demo``: sign in offline against the local authority and use the token.

:func:`run` chooses the path: by default the sign-in goes through the broker daemon on a
private D-Bus bus (:mod:`authbroker.demo.broker`); ``no_broker`` (or no dbus-daemon) signs in
directly with azure-identity's InteractiveBrowserCredential (:mod:`authbroker.demo.direct`).
Both use the shared :mod:`authbroker.demo.steps`. Nothing secret is printed: the token is
shown only as its decoded claims, and the only password ever printed is the documented demo
credential (with ``interactive``). The command line is :mod:`authbroker.cli.demo`.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from authbroker.demo import broker, direct
from authbroker.demo.steps import DemoError, first_line
from authbroker.devkit.privatebus import dbus_daemon


@dataclass(frozen=True)
class DemoOptions:
    interactive: bool = False  # the person's own browser instead of the scripted user agent
    no_broker: bool = False  # InteractiveBrowserCredential directly, without the daemon
    data_dir: Path | None = None  # the authority's data directory (default: a temporary one)
    verbose: bool = False  # keep the SDKs' INFO logging


def run(options: DemoOptions) -> int:
    """Run the demo; 0 when every step worked, 1 (with the reason on stderr) otherwise."""
    if not options.verbose:  # the SDKs log every HTTP request at INFO
        for name in ("azure", "msal", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    print("authbroker demo: an offline sign-in against a local Entra-compatible authority")
    with ExitStack() as stack:
        if options.data_dir is not None:
            data_dir = Path(options.data_dir)
        else:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="authbroker-")))
        try:
            return _run_path(options, data_dir, stack)
        except DemoError as exc:
            print(f"\ndemo failed: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # a library error: name it, without a traceback
            print(f"\ndemo failed: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
            return 1


def _run_path(options: DemoOptions, data_dir: Path, stack: ExitStack) -> int:
    if not options.no_broker:
        if dbus_daemon() is not None:
            return broker.run(options.interactive, data_dir, stack)
        print("dbus-daemon is not installed (scripts/install-system-deps.sh adds it), so the")
        print("broker daemon cannot run here: signing in directly instead (--no-broker).")
    return direct.run(options.interactive, data_dir, stack)
