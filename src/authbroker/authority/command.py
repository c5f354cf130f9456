"""Run the local authority until SIGINT/SIGTERM: the part behind ``authbroker authority``.

:func:`run` checks the configuration, serves, and hands the running authority's facts (the
dict the command prints as its one JSON line) to ``on_ready``; the command line itself
(:mod:`authbroker.cli.authority`) parses the options and does the printing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from authbroker import config
from authbroker.errors import ConfigurationError

if TYPE_CHECKING:
    from authbroker.authority.server import AuthorityConfig

log = logging.getLogger("authbroker.authority")

#: The shortest access-token lifetime allowed (unless ``config.AUTHORITY_ALLOW_SHORT_TOKENS``).
MIN_TOKEN_LIFETIME = 600


def check(cfg: AuthorityConfig) -> None:
    """Refuse lifetimes clients cannot work with (:class:`ConfigurationError`)."""
    short_ok = os.environ.get(config.AUTHORITY_ALLOW_SHORT_TOKENS) == "1"
    if cfg.token_lifetime < MIN_TOKEN_LIFETIME and not short_ok:
        raise ConfigurationError(
            f"--token-lifetime must be at least {MIN_TOKEN_LIFETIME} s (clients treat tokens "
            f"with < 5 minutes left as expired); set {config.AUTHORITY_ALLOW_SHORT_TOKENS}=1 to "
            "allow shorter ones in tests")
    if (cfg.token_lifetime < 1 or cfg.code_lifetime < 1 or cfg.device_interval < 1
            or cfg.prt_lifetime < 1):
        raise ConfigurationError("lifetimes and intervals must be positive")


async def _serve(cfg: AuthorityConfig, on_ready: Callable[[dict[str, Any]], None]) -> int:
    from authbroker.authority.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(cfg) as running:
        on_ready(running.info)
        log.info("serving %s (tenant %s); stop with Ctrl-C", running.authority, running.tenant_id)
        await stop.wait()
        log.info("stopping")
    return 0


def run(cfg: AuthorityConfig, *, on_ready: Callable[[dict[str, Any]], None]) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop.

    Raises :class:`ConfigurationError` (or another ``AuthBrokerError``) for a configuration
    that cannot work and ``OSError`` when the authority cannot start (e.g. the port is taken).
    """
    check(cfg)
    return asyncio.run(_serve(cfg, on_ready))
