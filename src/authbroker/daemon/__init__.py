"""The Broker1 D-Bus daemon's composition root: ``run(options)`` serves until SIGTERM/SIGINT.

The name is owned first and the broker core (msal, the store) is built right after, in a
thread: a D-Bus activation's first ``Ping`` is answered without waiting for msal to import, and
Broker1 calls that arrive meanwhile wait for the core. Logs go to stderr; nothing is ever
written to stdout (D-Bus activation and systemd pass stdout on to other places).

Importing this package stays light (no jeepney, no msal): every daemon module imports it
first, so the service and the core are imported inside :func:`run` only.

Exit codes: ``EXIT_OK`` 0 clean stop, ``EXIT_ERROR`` 1 error, ``EXIT_CONFIG`` 2 configuration
error, ``EXIT_NAME_TAKEN`` 3 the bus name is owned by another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from authbroker import broker1
from authbroker.config import Settings, setting
from authbroker.errors import AuthBrokerError, BrokerStatusError, ConfigurationError, NameTakenError

if TYPE_CHECKING:
    from authbroker.daemon.audit import AuditLog
    from authbroker.daemon.handler import CallContext, Handler

__all__ = ["EXIT_CONFIG", "EXIT_ERROR", "EXIT_NAME_TAKEN", "EXIT_OK", "DaemonOptions", "run"]

log = logging.getLogger("authbroker.daemon")

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_NAME_TAKEN = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class DaemonOptions:
    """How to run the daemon (``authbroker daemon``'s options; None: the default)."""

    store: Path | None = None  # the encrypted store file
    authority: str | None = None  # overrides the configured private authority
    idle_exit: float | None = None  # seconds without calls before releasing the name
    bus: str | None = None  # D-Bus address (default: the activating bus, else the session bus)
    verbose: bool = False


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

    def caller_left(self, sender: str) -> int:
        if self.ready.done() and not self.ready.exception():
            return self.ready.result().caller_left(sender)
        return 0

    async def aclose(self) -> None:
        if self.ready.done() and not self.ready.exception():
            await self.ready.result().aclose()


def _settings(options: DaemonOptions) -> Settings:
    settings = Settings.load()
    if options.authority:
        settings = dataclasses.replace(settings, authority=options.authority)
    return settings


def _build_core(options: DaemonOptions, settings: Settings, audit_log: AuditLog) -> Handler:
    from authbroker.daemon.broker import BrokerCore
    from authbroker.daemon.store import Store, default_store_path

    store = Store(options.store or default_store_path())
    return BrokerCore(store=store, settings=settings, audit_log=audit_log)


async def _main(options: DaemonOptions) -> int:
    from authbroker.daemon.audit import AuditLog
    from authbroker.daemon.service import BrokerService

    settings = _settings(options)
    audit_log = AuditLog()  # one log: refusals at the service, and everything the core serves
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    handler = _DeferredHandler()
    service = BrokerService(handler, bus=options.bus, idle_exit=options.idle_exit,
                            audit_log=audit_log)
    try:
        await service.start()  # the name first ...
    except NameTakenError as exc:
        log.error("%s", exc)
        return EXIT_NAME_TAKEN
    try:
        try:  # ... the core after, while calls already queue on the deferred handler
            core = await asyncio.to_thread(_build_core, options, settings, audit_log)
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


def run(options: DaemonOptions) -> int:
    """Serve Broker1 until SIGTERM/SIGINT (or the idle exit); the exit code."""
    try:
        if setting("authority") is None and not options.authority:
            log.debug("no private authority configured: requests go to the authority they name")
        with contextlib.redirect_stdout(sys.stderr):  # stdout is never ours to write to
            return asyncio.run(_main(options))
    except ConfigurationError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except AuthBrokerError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
