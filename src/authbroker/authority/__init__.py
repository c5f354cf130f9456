"""The local, offline Entra-compatible authority (``authbroker authority``).

Run it with the CLI (``authbroker authority``, :mod:`authbroker.cli.authority`), until a
signal with :func:`run` (:mod:`authbroker.authority.command`), or in-process with :func:`serve`::

    async with serve(AuthorityConfig(data_dir=path, port=0)) as running:
        print(running.info)          # the same dict the CLI prints as its JSON line

The demo tenant and its well-known development password are exported as constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authbroker.authority.command import MIN_TOKEN_LIFETIME, run
from authbroker.authority.directory import (
    CONSUMER_TENANT_ID,
    DEMO_DOMAIN,
    DEMO_PASSWORD,
    DEMO_TENANT_ID,
    DEMO_USERS,
)

if TYPE_CHECKING:
    from authbroker.authority.server import AuthorityConfig, RunningAuthority, serve

__all__ = [
    "CONSUMER_TENANT_ID",
    "DEMO_DOMAIN",
    "DEMO_PASSWORD",
    "DEMO_TENANT_ID",
    "DEMO_USERS",
    "MIN_TOKEN_LIFETIME",
    "AuthorityConfig",
    "RunningAuthority",
    "run",
    "serve",
]


def __getattr__(name: str) -> Any:
    # The server pulls in aiohttp; load it only when asked for.
    if name in ("AuthorityConfig", "RunningAuthority", "serve"):
        from authbroker.authority import server

        return getattr(server, name)
    raise AttributeError(name)
