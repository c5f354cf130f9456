"""The azure-core edge: which azure-core / azure-identity error a caller of get_token sees.

Backends raise ``BackendError`` (and the core ``NeedsInteraction``); nothing below this module
raises an azure-core exception. ``translate`` is the one place where they become
``AuthenticationRequiredError``, ``CredentialUnavailableError`` (always inside
DefaultAzureCredential, and for a backend that is unavailable) or ``ClientAuthenticationError``.
"""

from __future__ import annotations

from azure.core.exceptions import ClientAuthenticationError

from authbroker.broker1 import NATIVE_CLIENT_REDIRECT_URI
from authbroker.plugin.backends.base import BackendError, Kind, TokenQuery
from azure.identity import AuthenticationRequiredError, CredentialUnavailableError


class NeedsInteraction(Exception):
    """A person must sign in, and this credential is configured not to ask."""


def redirect_uri_help(client_id: str) -> str:
    return (
        "The redirect URI is not registered for this application (AADSTS50011). Register the one "
        f"for each platform you use on app {client_id}: Windows (WAM) "
        f"'ms-appx-web://Microsoft.AAD.BrokerPlugin/{client_id}'; Linux brokers "
        f"'{NATIVE_CLIENT_REDIRECT_URI}'; macOS broker 'msauth.com.msauth.unsignedapp://auth'; "
        "browser fallback 'http://localhost'"
    )


def translate(
    exc: BaseException, query: TokenQuery | None, *, client_id: str, in_dac: bool
) -> BaseException:
    """The error a caller of get_token sees for ``exc`` (``in_dac``: inside DAC's chain)."""
    scopes = query.scopes if query else ()
    claims = query.claims if query else None
    if isinstance(exc, NeedsInteraction):
        return AuthenticationRequiredError(scopes, message=str(exc), claims=claims)
    if isinstance(exc, CredentialUnavailableError | ValueError):
        return exc
    if isinstance(exc, ClientAuthenticationError):
        return CredentialUnavailableError(message=exc.message) if in_dac else exc
    if isinstance(exc, BackendError):
        if exc.kind is Kind.INTERACTION_REQUIRED:
            return AuthenticationRequiredError(scopes, message=exc.message, claims=claims)
        message = exc.message
        if "AADSTS50011" in message:
            message = f"{message}. {redirect_uri_help(client_id)}"
        if exc.kind is Kind.UNAVAILABLE or in_dac:
            return CredentialUnavailableError(message=message)
        return ClientAuthenticationError(message=f"Authentication failed: {message}")
    message = f"Authentication failed: {exc}"
    return (
        CredentialUnavailableError(message=message)
        if in_dac
        else ClientAuthenticationError(message=message)
    )
