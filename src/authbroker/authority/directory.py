"""Who may sign in: the users (demo tenant or ``--users FILE``) and the registered clients.

Users file (JSON)::

    {"tenant_id": "<guid>", "domain": "example.org",
     "users": [{"username": "a@example.org", "password": "...", "name": "A",
                "oid": "<guid, optional>", "personal": false}]}

Personal accounts (``"personal": true``) live in the Microsoft consumer tenant and are offered on
``consumers``, ``common``, and on ``organizations`` only with the MSA passthrough marker.

Clients file (JSON)::

    {"allow_unregistered": true,
     "clients": [{"client_id": "<id>", "redirect_uris": ["https://app.example/cb"],
                  "family": true}]}

``"family": true`` puts a client in the family of client ids (FOCI): its token responses carry
``"foci": "1"`` and its refresh tokens can be redeemed by every other family member (and it can
redeem theirs). Microsoft's well-known family clients (:data:`FAMILY_CLIENTS`) are registered
and in the family without being listed; ``"family": false`` on one of them takes it out.
Every client accepts loopback redirect URIs, the native-client URI and its own broker URI
(``ms-appx-web://Microsoft.AAD.BrokerPlugin/<client id>``) besides the ones listed.
"""

from __future__ import annotations

import hmac
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authbroker.errors import ConfigurationError

DEMO_TENANT_ID = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
DEMO_DOMAIN = "contoso.example"
# A well-known development credential, like Azurite's account key. Never use it for anything real.
DEMO_PASSWORD = "Passw0rd!"
DEMO_USERS = ("user@contoso.example", "second@contoso.example", "personal@outlook.example")
# The tenant Entra uses for personal Microsoft accounts.
CONSUMER_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

_OID_NAMESPACE = uuid.UUID("5f0c6a0e-2d0b-4a8e-9a51-6a7c1e0b8c11")
NATIVE_CLIENT_REDIRECT = "https://login.microsoftonline.com/common/oauth2/nativeclient"
BROKER_REDIRECT_PREFIX = "ms-appx-web://Microsoft.AAD.BrokerPlugin/"

#: The value of ``foci`` in a token response to a family member (Entra has one family).
FAMILY_ID = "1"
#: Microsoft's first-party public clients in the family of client ids, with where each id and
#: its membership were checked: [S] Secureworks' known-foci-clients.csv
#: (github.com/secureworks/family-of-client-ids-research); [V] the id is VS Code's own
#: (microsoft/vscode, extensions/microsoft-authentication), family membership per issue 8 only.
FAMILY_CLIENTS: dict[str, str] = {
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46": "Microsoft Azure CLI",  # [S]
    "1950a258-227b-4e31-a9cf-717495945fc2": "Microsoft Azure PowerShell",  # [S]
    "872cd9fa-d31f-45e0-9eab-6e460a02d1f1": "Visual Studio",  # [S]
    "aebc6443-996d-45c2-90f0-388ff96faa56": "Visual Studio Code",  # [V]
    "d3590ed6-52b3-4102-aeff-aad2292ab01c": "Microsoft Office",  # [S]
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264": "Microsoft Teams",  # [S]
    "27922004-5251-4030-b22d-91ecd9a37ea4": "Outlook Mobile",  # [S]
    "ab9b8c07-8f02-4f72-87fa-80105867a763": "OneDrive SyncEngine",  # [S]
    "b26aadf8-566f-4478-926f-589f601d9c74": "OneDrive",  # [S]
    "ecd6b820-32c2-49b6-98a6-444530e5a77a": "Microsoft Edge",  # [S]
    "e9c51622-460d-4d3d-952d-966a5b1da34c": "Microsoft Edge",  # [S]
    "f44b1140-bc5e-48c6-8dc0-5cf5a53c0e34": "Microsoft Edge",  # [S]
    "d7b530a4-7680-4c23-a8bf-c52c121d2e87": "Microsoft Edge Enterprise New Tab Page",  # [S]
}


@dataclass(frozen=True)
class User:
    username: str
    password: str = field(repr=False)
    name: str
    oid: str
    tenant_id: str
    personal: bool = False

    def check_password(self, password: str) -> bool:
        return hmac.compare_digest(self.password.encode(), password.encode())


@dataclass(frozen=True)
class TenantScope:
    """What a tenant path segment (GUID, domain, organizations, common, consumers) admits."""

    segment: str
    organizational: bool
    personal: bool
    passthrough_personal: bool  # personal accounts only with msal_request_type=consumer_passthrough

    def admits(self, user: User, *, passthrough: bool) -> bool:
        if user.personal:
            return self.personal or (self.passthrough_personal and passthrough)
        return self.organizational


class Directory:
    def __init__(self, tenant_id: str, domain: str, users: list[User]) -> None:
        self.tenant_id = tenant_id
        self.domain = domain
        self._users = {u.username.lower(): u for u in users}

    @classmethod
    def demo(cls) -> Directory:
        users = [
            _user("user@contoso.example", DEMO_PASSWORD, "Demo User", DEMO_TENANT_ID),
            _user("second@contoso.example", DEMO_PASSWORD, "Second User", DEMO_TENANT_ID),
            _user(
                "personal@outlook.example", DEMO_PASSWORD, "Personal User", CONSUMER_TENANT_ID,
                personal=True,
            ),
        ]
        return cls(DEMO_TENANT_ID, DEMO_DOMAIN, users)

    @classmethod
    def from_file(cls, path: Path) -> Directory:
        data = _load_json(path, "users")
        try:
            tenant_id = str(uuid.UUID(str(data.get("tenant_id", DEMO_TENANT_ID))))
            domain = str(data.get("domain", DEMO_DOMAIN)).lower()
            users = []
            for entry in data["users"]:
                personal = bool(entry.get("personal", False))
                tid = CONSUMER_TENANT_ID if personal else tenant_id
                users.append(
                    _user(
                        str(entry["username"]), str(entry["password"]),
                        str(entry.get("name") or entry["username"].split("@")[0]), tid,
                        personal=personal, oid=entry.get("oid"),
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigurationError(
                f"users file {path} is not valid: {type(exc).__name__} {exc}",
                hint="see the format in the authbroker.authority.directory docstring",
            ) from None
        return cls(tenant_id, domain, users)

    def user(self, username: str) -> User | None:
        return self._users.get(username.strip().lower())

    def authenticate(self, username: str, password: str) -> User | None:
        user = self.user(username)
        if user is None or not user.check_password(password):
            return None
        return user

    def tenant_scope(self, segment: str) -> TenantScope | None:
        """The tenant a path segment names, or None if this authority does not serve it."""
        seg = segment.lower()
        if seg in (self.tenant_id, self.domain):
            return TenantScope(segment, True, False, False)
        if seg == "organizations":
            return TenantScope(segment, True, False, True)
        if seg == "common":
            return TenantScope(segment, True, True, False)
        if seg in ("consumers", CONSUMER_TENANT_ID):
            return TenantScope(segment, False, True, False)
        return None


def _user(
    username: str, password: str, name: str, tenant_id: str, *,
    personal: bool = False, oid: str | None = None,
) -> User:
    oid = str(uuid.UUID(oid)) if oid else str(uuid.uuid5(_OID_NAMESPACE, username.lower()))
    return User(username.lower(), password, name, oid, tenant_id, personal)


@dataclass(frozen=True)
class Clients:
    """Registered clients, their redirect URIs and the family (FOCI) members; unregistered
    clients are allowed by default."""

    allow_unregistered: bool = True
    redirect_uris: dict[str, frozenset[str]] = field(default_factory=dict)
    family: frozenset[str] = frozenset(FAMILY_CLIENTS)

    @classmethod
    def from_file(cls, path: Path) -> Clients:
        data = _load_json(path, "clients")
        family = set(FAMILY_CLIENTS)
        uris: dict[str, frozenset[str]] = {}
        try:
            for entry in data.get("clients", []):
                client_id = str(entry["client_id"])
                uris[client_id] = frozenset(str(u) for u in entry.get("redirect_uris", []))
                member = entry.get("family", client_id in FAMILY_CLIENTS)
                if not isinstance(member, bool):
                    raise TypeError(f"'family' of {client_id[:100]} must be true or false")
                (family.add if member else family.discard)(client_id)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"clients file {path} is not valid: {type(exc).__name__} {exc}",
                hint="see the format in the authbroker.authority.directory docstring",
            ) from None
        return cls(bool(data.get("allow_unregistered", True)), uris, frozenset(family))

    def known(self, client_id: str) -> bool:
        return (self.allow_unregistered or client_id in self.redirect_uris
                or client_id in FAMILY_CLIENTS)

    def in_family(self, client_id: str) -> bool:
        """Whether the client gets family refresh tokens and may redeem other members' ones."""
        return client_id in self.family

    def redirect_allowed(self, client_id: str, redirect_uri: str) -> bool:
        if redirect_uri in self.redirect_uris.get(client_id, ()):
            return True
        if redirect_uri in (NATIVE_CLIENT_REDIRECT, BROKER_REDIRECT_PREFIX + client_id):
            return True
        return is_loopback_redirect(redirect_uri)


def is_loopback_redirect(uri: str) -> bool:
    """http(s) on localhost / 127.0.0.1 / [::1], any port, no fragment (RFC 8252 §7.3)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.hostname in ("localhost", "127.0.0.1", "::1")
        and not parts.fragment
        and not parts.username
    )


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read {what} file {path}: {exc}", hint=f"pass a JSON {what} file"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{what} file {path} must hold a JSON object")
    return data
