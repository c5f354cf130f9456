"""Where a request goes: its authority (a ``Target``), and the scopes, query and claims it takes.

msal hands pymsalruntime the authority without its port, so a request whose authority has the
configured authority's host and no port, or no authority at all, goes to the configured
authority (``AUTHBROKER_AUTHORITY`` / ``authority`` in the config file), with instance discovery
off and the request's tenant path segment kept. Other authorities go as given; instance
discovery stays on only for Microsoft's own hosts.

The routing setting (``AUTHBROKER_ROUTE_PUBLIC_CLOUD=1`` / ``route_public_cloud = true``, off by
default) is the emulator case: a request naming one of Microsoft's public-cloud hosts
(:data:`PUBLIC_CLOUD_HOSTS`) is rewritten to the private authority, its tenant path segment
kept (:class:`PublicCloudRoute`, applied by the broker to the request before anything else
reads it). Off, nothing meant for Microsoft is ever redirected; on without a private authority
is a configuration error naming both settings. An authority that cannot be reached is named
with the setting that would fix it (:func:`unreachable_hint`).

A request's ``popParams`` are checked by ``popkeys.pop_request`` (PoP is served; mTLS PoP and
a client-held key are refused; never a bearer token in place of a PoP one).

A request's ``decodedClaims`` split into client capabilities (``xms_cc``: which msal app and
cache serve it) and a real claims challenge (:func:`authbroker.entra.split_claims`); claims that
are not JSON are the caller's mistake, answered with status 6 from here, the one place.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from authbroker import broker1, config, entra
from authbroker.errors import BrokerStatusError, ConfigurationError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_TENANT = "organizations"
#: Microsoft's public-cloud sign-in hosts (msal's well-known hosts minus the national clouds):
#: what the routing setting sends to the private authority.
PUBLIC_CLOUD_HOSTS = frozenset({
    "login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net",
})
assert PUBLIC_CLOUD_HOSTS <= WELL_KNOWN_AUTHORITY_HOSTS
#: The routing setting as a hint spells it.
ROUTING_SETTING = (
    f"{config.ROUTE_PUBLIC_CLOUD}=1 (or `route_public_cloud = true` in the config file)"
)
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


@dataclass(frozen=True)
class PublicCloudRoute:
    """The routing setting when on: public-cloud requests go to ``private`` instead."""

    private: str  # the configured private authority, https://host[:port][/tenant]

    @classmethod
    def of(cls, private: str | None, enabled: bool) -> PublicCloudRoute | None:
        """The route the settings ask for (None when off); ConfigurationError when on without
        a private authority, naming both settings."""
        if not enabled:
            return None
        if not private or urlsplit(private.strip()).scheme != "https":
            raise ConfigurationError(
                f"{config.ROUTE_PUBLIC_CLOUD} is on but no private authority is configured "
                f"({config.AUTHORITY} is {'unset' if not private else repr(private)})",
                hint=f"set {config.AUTHORITY} (or `authority` in the config file) to your "
                f"private authority's https URL, or turn {config.ROUTE_PUBLIC_CLOUD} off",
            )
        return cls(private.strip())

    def apply(self, auth: broker1.AuthParameters) -> broker1.AuthParameters:
        """``auth`` with a public-cloud authority replaced by the private one (tenant kept)."""
        authority = route_public_cloud(auth.authority, self.private)
        return auth if authority == auth.authority else dataclasses.replace(
            auth, authority=authority)


@functools.lru_cache(maxsize=256)
def route_public_cloud(requested: str, private: str) -> str:
    """``requested`` on the private authority if it names a public-cloud host, else as is."""
    parts = urlsplit(requested.strip())
    if parts.scheme != "https" or (parts.hostname or "").lower() not in PUBLIC_CLOUD_HOSTS:
        return requested
    _host, netloc, _port, private_tenant = _split_authority(private)
    tenant = parts.path.strip("/").split("/")[0]
    return f"https://{netloc}/{tenant or private_tenant or DEFAULT_TENANT}"


def unreachable_hint(authority: str) -> str:
    """What to do about an authority that cannot be reached: the setting that sends it
    elsewhere (a public-cloud host: the routing setting), else the private authority's."""
    host = (urlsplit(authority).hostname or "").lower()
    if host in PUBLIC_CLOUD_HOSTS:
        return (
            f"this request is for Microsoft's {host}: check the network, or set "
            f"{ROUTING_SETTING} to send it to your private authority ({config.AUTHORITY})"
        )
    return (
        f"check that it is running, or set {config.AUTHORITY} (or `authority` in the config "
        "file) to the authority's URL with its port, e.g. https://127.0.0.1:8443"
    )


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
