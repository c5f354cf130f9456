"""The ``browser`` backend: msal's own loopback authorization-code flow (no broker at all).

Always available where a browser can be opened. It has no "default broker account" and cannot
do PoP; both are reported as such instead of being quietly changed into something else. As
azure-identity's ``InteractiveBrowserCredential`` does, a sign-in first builds msal's app, whose
authority requests (openid-configuration, instance discovery) go through the credential's
pipeline, and only then finds out whether a browser can be opened (``Kind.UNAVAILABLE`` if not).
"""

from __future__ import annotations

import webbrowser

from authbroker.broker1 import Account
from authbroker.plugin.backends import base
from authbroker.plugin.backends.base import BackendError, Kind, Token, TokenQuery
from authbroker.plugin.backends.msal_apps import (
    MsalApps,
    MsalSettings,
    check,
    find_account,
    to_token,
)

NAME = "browser"


def why_unavailable() -> base.Unusable:
    """Why no browser can be opened here (and the fix), or None."""
    try:
        webbrowser.get()
    except webbrowser.Error:
        return "no web browser can be opened", "set $BROWSER to a browser command"
    return None


def unavailable_reason() -> str | None:
    return base.reason_text(why_unavailable())


class BrowserBackend:
    name = NAME

    def __init__(self, settings: MsalSettings) -> None:
        self._apps = MsalApps(settings, broker=False)

    def silent(self, query: TokenQuery, account: Account | None) -> Token:
        if account is None:
            raise BackendError(
                Kind.INTERACTION_REQUIRED, "the browser backend has no default broker account"
            )
        app = self._apps.get(query)
        found = find_account(app, account)
        if found is None:
            raise BackendError(Kind.INTERACTION_REQUIRED, "the account is not in the token cache")
        result = app.acquire_token_silent_with_error(
            list(query.scopes), account=found, claims_challenge=query.claims
        )
        return to_token(check(result, silent=True), query)

    def interactive(self, query: TokenQuery, *, prompt: str) -> Token:
        if query.pop is not None:
            raise BackendError(
                Kind.UNSUPPORTED,
                "Proof-of-Possession tokens need a broker; the browser backend can only issue "
                "bearer tokens",
            )
        app = self._apps.get(query)  # the authority requests, through the credential's pipeline
        reason = unavailable_reason()
        if reason:  # msal would wait for a person to open its URL by hand until the timeout
            raise BackendError(Kind.UNAVAILABLE, reason)
        try:
            result = app.acquire_token_interactive(
                list(query.scopes),
                prompt=prompt if prompt != "none" else "select_account",
                login_hint=query.login_hint,
                claims_challenge=query.claims,
                timeout=query.timeout,
                port=query.redirect_port,
            )
        except OSError as exc:  # the loopback listener could not start
            raise BackendError(Kind.UNAVAILABLE, f"couldn't start an HTTP server: {exc}") from exc
        except RuntimeError as exc:  # msal's BrowserInteractionTimeoutError
            raise BackendError(
                Kind.FAILED,
                f"Timed out after waiting {query.timeout:g} seconds for the user to authenticate",
            ) from exc
        return to_token(check(result, silent=False), query)

    def close(self) -> None:
        self._apps.clear()
