"""``authbroker daemon``: run the Broker1 broker on the session bus until SIGTERM/SIGINT.

The name is owned first and the broker core (msal, the store) is built right after, in a
thread: a D-Bus activation's first ``Ping`` is answered without waiting for msal to import, and
Broker1 calls that arrive meanwhile wait for the core. Logs go to stderr; nothing is ever
written to stdout (D-Bus activation and systemd pass stdout on to other places).

Exit codes: 0 clean stop, 1 error, 2 configuration error, 3 the bus name is owned by another
process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from authbroker import broker1
from authbroker.config import Settings, setting
from authbroker.daemon.handler import CallContext, Handler
from authbroker.daemon.service import BrokerService
from authbroker.errors import AuthBrokerError, BrokerStatusError, ConfigurationError, NameTakenError

log = logging.getLogger("authbroker.daemon")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_NAME_TAKEN = 0, 1, 2, 3


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the per-user Broker1 broker (com.microsoft.identity.broker1) on the "
        "D-Bus session bus. Normally started by D-Bus activation; see "
        "'authbroker install-service'.",
    )
    parser.add_argument("--store", type=Path, metavar="PATH",
                        help="the encrypted store file (default: "
                        "$XDG_STATE_HOME/authbroker/broker/store.enc)")
    parser.add_argument("--authority", metavar="URL",
                        help="the authority for requests naming its host without a port, or "
                        "none (default: $AUTHBROKER_AUTHORITY or 'authority' in the config file)")
    parser.add_argument("--idle-exit", type=float, metavar="SECONDS",
                        help="release the name and exit after this long without calls "
                        "(for D-Bus activation)")
    parser.add_argument("--bus", metavar="ADDRESS",
                        help="D-Bus address to serve on (default: the bus that activated us, "
                        "else the session bus)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


class _DeferredHandler:
    """Stands in for the core while it is being built; calls wait for it."""

    def __init__(self) -> None:
        self.ready: asyncio.Future[Handler] = asyncio.get_running_loop().create_future()

    async def handle(self, method: broker1.AnyMethod, request: broker1.Request,
                     ctx: CallContext) -> broker1.Result:
        try:
            core = await asyncio.shield(self.ready)
        except AuthBrokerError as exc:
            raise BrokerStatusError(broker1.Status.INCORRECT_CONFIGURATION,
                                  f"the broker could not start: {exc}",
                                  tag="daemon.start") from None
        return await core.handle(method, request, ctx)

    async def aclose(self) -> None:
        if self.ready.done() and not self.ready.exception():
            await self.ready.result().aclose()


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.load()
    if args.authority:
        settings = dataclasses.replace(settings, authority=args.authority)
    return settings


def _build_core(args: argparse.Namespace, settings: Settings) -> Handler:
    from authbroker.daemon.broker import BrokerCore
    from authbroker.daemon.store import Store, default_store_path

    store = Store(args.store or default_store_path())
    return BrokerCore(store=store, settings=settings)


async def _main(args: argparse.Namespace) -> int:
    settings = _settings(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handler = _DeferredHandler()
    service = BrokerService(handler, bus=args.bus, idle_exit=args.idle_exit)
    try:
        await service.start()
    except NameTakenError as exc:
        log.error("%s", exc)
        return EXIT_NAME_TAKEN
    try:
        try:
            core = await asyncio.to_thread(_build_core, args, settings)
        except AuthBrokerError as exc:
            log.error("cannot start the broker core: %s", exc)
            handler.ready.set_exception(exc)
            return EXIT_ERROR
        except Exception as exc:  # a bug: say where, not what (messages may hold data)
            log.error("cannot start the broker core: unexpected %s", type(exc).__name__)
            handler.ready.set_exception(AuthBrokerError(f"internal error {type(exc).__name__}"))
            return EXIT_ERROR
        handler.ready.set_result(core)
        if settings.authority:
            log.info("private authority: %s", settings.authority)
        await service.run(stop)
        return EXIT_OK
    finally:
        await service.aclose()
        with contextlib.suppress(Exception):
            await handler.aclose()
        if handler.ready.done() and handler.ready.exception():
            handler.ready.exception()  # retrieved: no "never retrieved" warning


def run(args: argparse.Namespace) -> int:
    try:
        if setting("authority") is None and not args.authority:
            log.debug("no private authority configured: requests go to the authority they name")
        with contextlib.redirect_stdout(sys.stderr):  # stdout is never ours to write to
            return asyncio.run(_main(args))
    except ConfigurationError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except AuthBrokerError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
