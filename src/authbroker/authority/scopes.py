"""Scopes: which resource a request is for, and whether it gets a v1 (Azure) access token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authbroker.authority import errors

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
GRAPH = "https://graph.microsoft.com"
STORAGE_APP_ID = "e406a681-f3d4-42a8-90b6-c2b029497af1"
#: The Device Registration Service (docs/device-identity.md §1.3): its application id and the
#: ``urn:ms-drs`` names all mean this authority's DRS; a token for any of them has ``aud``
#: :data:`DRS_RESOURCE` (a v1 token, as Entra's DRS tokens are).
DRS_RESOURCE = "urn:ms-drs:127.0.0.1"
DRS_APP_ID = "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9"
DRS_NAMES = frozenset({DRS_RESOURCE, DRS_APP_ID, "urn:ms-drs:enterpriseregistration.windows.net"})
DRS_SCOPE = f"{DRS_APP_ID}/.default"
# Resources whose real Entra tokens are v1 (iss sts.windows.net); Azurite insists on that form.
AZURE_RESOURCE_SUFFIXES = (
    ".azure.com", ".azure.net", ".windows.net", ".azure.us", ".chinacloudapi.cn",
    ".usgovcloudapi.net", ".microsoft.com",
)
AZURE_RESOURCES = frozenset({STORAGE_APP_ID, "797f4846-ba00-4fd7-ba43-dac1f8f63013",
                             DRS_RESOURCE})
#: The authority's own PoP-protected demo resource (``/resource/pop``): the audience of its
#: tokens and the scope a client asks for (a v2 token, ``aud`` = the App ID URI).
POP_RESOURCE = "api://authbroker-pop"
POP_RESOURCE_SCOPE = f"{POP_RESOURCE}/.default"


@dataclass(frozen=True)
class ScopeRequest:
    scopes: tuple[str, ...]  # as requested, in order
    resource: str | None  # None: only OIDC scopes
    permissions: tuple[str, ...]  # scp values

    @property
    def offline(self) -> bool:
        return "offline_access" in self.scopes

    @property
    def openid(self) -> bool:
        return "openid" in self.scopes

    @property
    def azure_v1(self) -> bool:
        return self.resource is not None and is_azure_resource(self.resource)

    @property
    def text(self) -> str:
        return " ".join(self.scopes)


def parse_scopes(raw: str | None) -> ScopeRequest:
    scopes = tuple(dict.fromkeys(s for s in (raw or "").split() if s))
    resources: list[str] = []
    permissions: list[str] = []
    for scope in scopes:
        if scope.lower() in OIDC_SCOPES:
            continue
        parts = urlsplit(scope)
        if parts.scheme and parts.netloc and parts.path in ("", "/"):
            resource, perm = scope.rstrip("/"), ""  # a bare resource, v1 style
        else:
            resource, _, perm = scope.rpartition("/")
        if not resource:
            resource, perm = GRAPH, scope  # bare "User.Read" means Microsoft Graph
        if resource in DRS_NAMES:
            resource = DRS_RESOURCE
        if resource not in resources:
            resources.append(resource)
        permissions.append("user_impersonation" if perm in (".default", "") else perm)
    if len(resources) > 1:
        raise errors.several_resources()
    return ScopeRequest(scopes, resources[0] if resources else None, tuple(permissions))


def is_azure_resource(resource: str) -> bool:
    if resource in AZURE_RESOURCES:
        return True
    parts = urlsplit(resource)
    host = parts.hostname or ""
    return parts.scheme == "https" and host.endswith(AZURE_RESOURCE_SUFFIXES)


def parse_claims(raw: str | None) -> dict[str, Any]:
    """The ``claims`` request parameter (JSON object) or {}."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise errors.invalid_claims() from None
    if not isinstance(value, dict):
        raise errors.invalid_claims()
    return value


def client_capabilities(claims: dict[str, Any]) -> list[str]:
    """``xms_cc`` values asked for in ``claims`` (CAE: ["CP1"])."""
    access = claims.get("access_token")
    if not isinstance(access, dict):
        return []
    cc = access.get("xms_cc")
    values = cc.get("values") if isinstance(cc, dict) else None
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, str)]
