"""The msal side shared by the ``browser`` and ``native`` backends: apps, results, errors.

One ``PublicClientApplication`` per (tenant, CAE) — CAE apps carry the CP1 capability and their
own token cache, as azure-identity does. msal is imported only when a backend is first used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from authbroker.broker1 import Account
from authbroker.entra import INTERACTION_ERRORS
from authbroker.plugin.backends.base import BackendError, Kind, Token, TokenQuery, account_of


@dataclass
class MsalSettings:
    """What the credential lends its msal-based backends."""

    http_client: Any  # azure-identity's MsalClient (the credential's pipeline)
    instance_discovery: bool | None
    enable_pii_log: bool
    cache_for: Callable[[bool], Any]  # is_cae -> msal.TokenCache


class MsalApps:
    def __init__(self, settings: MsalSettings, *, broker: bool) -> None:
        self._settings = settings
        self._broker = broker
        self._apps: dict[tuple[str, str, bool], Any] = {}

    def get(self, query: TokenQuery) -> Any:
        key = (query.client_id, query.authority_url, query.enable_cae)
        app = self._apps.get(key)
        if app is None:
            import msal

            flags = {
                f"enable_broker_on_{p}": self._broker for p in ("windows", "mac", "linux", "wsl")
            }
            app = msal.PublicClientApplication(
                query.client_id,
                authority=query.authority_url,
                client_capabilities=["CP1"] if query.enable_cae else None,
                token_cache=self._settings.cache_for(query.enable_cae),
                http_client=self._settings.http_client,
                instance_discovery=self._settings.instance_discovery,
                enable_pii_log=self._settings.enable_pii_log,
                **flags,
            )
            self._apps[key] = app
        return app

    def clear(self) -> None:
        self._apps.clear()


def find_account(app: Any, account: Account) -> dict[str, Any] | None:
    candidates: list[dict[str, Any]] = app.get_accounts(username=account.username or None)
    for candidate in candidates:
        if candidate.get("home_account_id") == account.home_account_id:
            return candidate
    return None


def check(result: dict[str, Any] | None, *, silent: bool) -> dict[str, Any]:
    """msal's result dict, or the BackendError it describes."""
    if not result:
        raise BackendError(Kind.INTERACTION_REQUIRED, "no cached sign-in for this account")
    if "access_token" in result:
        return result
    error = str(result.get("error") or "")
    description = str(result.get("error_description") or error or "authentication failed")
    if error in INTERACTION_ERRORS or (silent and error == "no_account"):
        raise BackendError(Kind.INTERACTION_REQUIRED, description, error_code=error)
    if "cancel" in description.lower() or error in ("access_denied", "user_canceled"):
        raise BackendError(Kind.CANCELLED, description, error_code=error)
    raise BackendError(Kind.FAILED, description, error_code=error)


def to_token(result: dict[str, Any], query: TokenQuery) -> Token:
    now = int(time.time())
    claims = result.get("id_token_claims") or {}
    client_info = str(result.get("client_info") or "")
    environment = urlparse(query.authority).netloc
    refresh_on = result.get("refresh_on")
    return Token(
        access_token=result["access_token"],
        expires_on=now + int(result.get("expires_in", 0)),
        token_type=str(result.get("token_type") or "Bearer"),
        refresh_on=int(refresh_on) if refresh_on else None,
        id_token_claims=claims,
        client_info=client_info,
        account=account_of(claims, client_info, environment),
    )
