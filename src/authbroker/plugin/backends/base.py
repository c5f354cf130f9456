"""What every plugin backend speaks: a token query in, a token (or a BackendError) out.

Backends never raise azure-core exceptions; the credential translates ``BackendError`` at its
edge (``authbroker.plugin.translate``). Nothing here imports msal, jeepney or pymsalruntime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlparse

from authbroker import entra
from authbroker.broker1 import Account
from authbroker.errors import AuthBrokerError


class Kind(StrEnum):
    """What the caller can do about a backend failure."""

    INTERACTION_REQUIRED = "interaction_required"  # a person must sign in
    UNAVAILABLE = "unavailable"  # this backend cannot work here: try the next one
    UNSUPPORTED = "unsupported"  # this backend cannot honour the request (e.g. PoP)
    CANCELLED = "cancelled"
    FAILED = "failed"  # the broker or authority said no


#: Why a backend cannot be used here and what makes it usable (None: it may be used).
Unusable = tuple[str, str] | None


def reason_text(unusable: Unusable) -> str | None:
    """``(why, fix)`` as one line for errors and logs: "why: fix"."""
    return f"{unusable[0]}: {unusable[1]}" if unusable else None


class BackendError(AuthBrokerError):
    """A backend failure. ``str()`` is safe to show: it never contains a secret."""

    def __init__(self, kind: Kind, message: str, *, error_code: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.error_code = error_code


@dataclass(frozen=True)
class PopRequest:
    """A Signed HTTP Request PoP request (the ``pop`` mapping of PopTokenRequestOptions)."""

    method: str
    url: str
    nonce: str

    @property
    def host(self) -> str:
        return urlparse(self.url).netloc

    @property
    def path(self) -> str:
        return urlparse(self.url).path or "/"


@dataclass(frozen=True)
class TokenQuery:
    """One token request, resolved and normalised (tenant chosen; claims as given)."""

    client_id: str
    authority: str  # "https://host" (no tenant)
    tenant_id: str
    scopes: tuple[str, ...]
    claims: str | None = None  # the raw claims challenge, as the caller gave it
    enable_cae: bool = False
    pop: PopRequest | None = None
    login_hint: str | None = None
    parent_window_handle: Any = None  # an int, or msal's CONSOLE_WINDOW_HANDLE sentinel
    extra_query: Mapping[str, str] = field(default_factory=dict)
    enable_msa_passthrough: bool = False
    timeout: float = 300.0
    redirect_port: int | None = None

    @property
    def authority_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}"


@dataclass(frozen=True)
class Token:
    """A token a backend obtained, with what is needed to build an AuthenticationRecord."""

    access_token: str = field(repr=False)
    expires_on: int
    token_type: str = "Bearer"
    refresh_on: int | None = None
    id_token_claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    client_info: str = ""
    account: Account | None = None

    def as_msal_result(self, now: int) -> dict[str, Any]:
        """The shape azure-identity's InteractiveCredential expects from ``_request_token``."""
        result: dict[str, Any] = {
            "access_token": self.access_token,
            "expires_in": max(0, self.expires_on - now),
            "token_type": self.token_type,
            "id_token_claims": dict(self.id_token_claims),
        }
        if self.client_info:
            result["client_info"] = self.client_info
        if self.refresh_on is not None:
            result["refresh_on"] = self.refresh_on
        return result


def account_of(claims: Mapping[str, Any], client_info: str, environment: str) -> Account | None:
    """The account a sign-in's id_token claims and client_info name (``entra.account_fields``).

    None without claims: a token that came with no id_token names nobody.
    """
    fields = entra.account_fields(claims, client_info, environment) if claims else None
    return Account(**fields) if fields else None


class Backend(Protocol):
    """A blocking backend. ``account=None`` in ``silent`` means "the broker's default account"."""

    name: str

    def silent(self, query: TokenQuery, account: Account | None) -> Token: ...

    def interactive(self, query: TokenQuery, *, prompt: str) -> Token: ...

    def close(self) -> None: ...


class AsyncBackend(Protocol):
    name: str

    async def silent(self, query: TokenQuery, account: Account | None) -> Token: ...

    async def interactive(self, query: TokenQuery, *, prompt: str) -> Token: ...

    async def close(self) -> None: ...
