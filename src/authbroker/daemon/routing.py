"""Where a request goes: its authority (a ``Target``), and the scopes, query and claims it takes.

msal hands pymsalruntime the authority without its port, so a request whose authority has the
configured authority's host and no port, or no authority at all, goes to the configured
authority (``AUTHBROKER_AUTHORITY`` / ``authority`` in the config file), with instance discovery
off and the request's tenant path segment kept. Other authorities go as given; instance
discovery stays on only for Microsoft's own hosts.

A request's ``decodedClaims`` split into client capabilities (``xms_cc``: which msal app and
cache serve it) and a real claims challenge (:func:`authbroker.entra.split_claims`); claims that
are not JSON are the caller's mistake, answered with status 6 from here, the one place.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from authbroker import broker1, entra
from authbroker.errors import BrokerStatusError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_TENANT = "organizations"
#: msal adds these itself and refuses them in a request.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
#: Keys of additionalQueryParametersForAuthorization meant for the client library, not the IdP.
TELEMETRY_QUERY_KEYS = frozenset({
    "msal_client_sku", "msal_client_ver", "x-client-xtra-sku", "msal_gui_thread",
    "validateAuthority",
})


@dataclass(frozen=True)
class Target:
    """Where a request goes: the authority URL msal gets, and whether to run instance discovery."""

    authority: str  # https://host[:port]/tenant
    instance_discovery: bool

    @property
    def environment(self) -> str:
        """The host as msal records it in the cache (lower case, no port)."""
        return (urlsplit(self.authority).hostname or "").lower()


def _split_authority(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise BrokerStatusError(
            broker1.Status.INCORRECT_CONFIGURATION,
            f"the authority {url!r} is not an https URL",
            tag="engine.authority",
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    tenant = parts.path.strip("/").split("/")[0]
    return parts.hostname.lower(), parts.netloc, port, tenant


@functools.lru_cache(maxsize=256)  # pure; every silent call asks (the daemon's hot path)
def resolve_authority(requested: str, configured: str | None) -> Target:
    """The authority a request really goes to (see the module docstring)."""
    if configured:
        c_host, c_netloc, _c_port, c_tenant = _split_authority(configured)
        if not requested:
            return Target(f"https://{c_netloc}/{c_tenant or DEFAULT_TENANT}", False)
        host, netloc, port, tenant = _split_authority(requested)
        if host == c_host and port is None:
            return Target(f"https://{c_netloc}/{tenant or c_tenant or DEFAULT_TENANT}", False)
    elif not requested:
        return Target(f"{DEFAULT_AUTHORITY_HOST}/{DEFAULT_TENANT}", True)
    host, netloc, port, tenant = _split_authority(requested)
    discovery = host in WELL_KNOWN_AUTHORITY_HOSTS
    return Target(f"https://{netloc}/{tenant or DEFAULT_TENANT}", discovery)


def split_claims(decoded: str) -> entra.Claims:
    """A request's ``decodedClaims`` as capabilities and challenge; status 6 if not JSON."""
    try:
        return entra.split_claims(decoded)
    except ValueError:
        raise BrokerStatusError(
            broker1.Status.API_CONTRACT_VIOLATION, "decodedClaims is not JSON", tag="engine.claims"
        ) from None


def msal_scopes(scopes: tuple[str, ...]) -> list[str]:
    """The requested scopes without the ones msal adds itself."""
    return [s for s in scopes if s.lower() not in RESERVED_SCOPES]


def authority_query(auth: broker1.AuthParameters) -> dict[str, str]:
    """Query parameters that travel to the authority (e.g. the MSA passthrough marker)."""
    return {k: v for k, v in auth.extra_query.items() if k not in TELEMETRY_QUERY_KEYS}
