"""The ``native`` backend: msal with the broker enabled, i.e. pymsalruntime.

That is WAM on Windows, the Company Portal broker on macOS, and on Linux whichever service owns
``com.microsoft.identity.broker1`` (Microsoft's broker, or our daemon). pymsalruntime is a
native library: when its shared libraries are missing ``ctypes`` raises ``OSError`` — not only
``ImportError`` — and when no broker answers its start-up Ping it raises ``RuntimeError``. All
three make this backend *unavailable* (the caller falls back); none fails the request.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from authbroker.broker1 import Account
from authbroker.plugin.backends.base import (
    BackendError,
    Kind,
    Token,
    TokenQuery,
    Unusable,
    reason_text,
)
from authbroker.plugin.backends.msal_apps import (
    MsalApps,
    MsalSettings,
    check,
    find_account,
    to_token,
)

NAME = "native"
CONSOLE_WINDOW_HANDLE = 1  # msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE on Linux
INSTALL_RUNTIME = "install it: pip install pymsalruntime (in the environment of this program)"
INSTALL_LIBRARIES = (
    "install the system libraries it loads (scripts/install-system-deps.sh, or your "
    "distribution's packages for the library named above)"
)


def load_runtime() -> Any:
    """Import pymsalruntime (this starts it: on Linux it pings the broker's bus name)."""
    import pymsalruntime

    return pymsalruntime


def why_unavailable() -> Unusable:
    """Why pymsalruntime cannot be used here (and the fix), or None. Imports (and starts) it.

    On Linux a session bus where nothing owns or can activate the broker's name is reported
    at once: pymsalruntime would spend ~5 s on its start-up Ping to find out the same.
    """
    if "pymsalruntime" not in sys.modules and importlib.util.find_spec("pymsalruntime") is None:
        return "pymsalruntime is not installed", INSTALL_RUNTIME
    if sys.platform == "linux" and "pymsalruntime" not in sys.modules:
        from authbroker.plugin.backends import dbus

        missing = dbus.why_unavailable()
        if missing and missing[1] == dbus.INSTALL_FIX:
            return f"pymsalruntime needs a broker, and {missing[0]}", missing[1]
    try:
        load_runtime()
    except ImportError as exc:
        return f"pymsalruntime is not installed ({exc})", INSTALL_RUNTIME
    except OSError as exc:
        return f"pymsalruntime cannot load its shared libraries ({exc})", INSTALL_LIBRARIES
    except RuntimeError as exc:
        return f"pymsalruntime found no broker ({exc})", "run `authbroker install-service`"
    return None


def unavailable_reason() -> str | None:
    return reason_text(why_unavailable())


class NativeBackend:
    name = NAME

    def __init__(self, settings: MsalSettings) -> None:
        self._apps = MsalApps(settings, broker=True)
        self._reason: str | None = None
        self._probed = False

    def _app(self, query: TokenQuery) -> Any:
        if not self._probed:  # once per backend: a failed start-up costs pymsalruntime ~5 s
            self._reason, self._probed = unavailable_reason(), True
        reason = self._reason
        if reason:
            raise BackendError(Kind.UNAVAILABLE, reason)
        try:
            app = self._apps.get(query)
        except OSError as exc:
            raise BackendError(Kind.UNAVAILABLE, f"the native broker cannot load: {exc}") from exc
        if not getattr(app, "_enable_broker", False):
            raise BackendError(Kind.UNAVAILABLE, "msal turned the broker off for this authority")
        return app

    def silent(self, query: TokenQuery, account: Account | None) -> Token:
        app = self._app(query)
        if account is None:
            return self._run(app, query, prompt="none", silent=True)
        found = find_account(app, account)
        if found is None:
            raise BackendError(Kind.INTERACTION_REQUIRED, "the account is not in the token cache")
        result = app.acquire_token_silent_with_error(
            list(query.scopes),
            account=found,
            claims_challenge=query.claims,
            auth_scheme=self._auth_scheme(query),
        )
        return self._token(check(result, silent=True), query)

    def interactive(self, query: TokenQuery, *, prompt: str) -> Token:
        return self._run(self._app(query), query, prompt=prompt, silent=False)

    def _run(self, app: Any, query: TokenQuery, *, prompt: str, silent: bool) -> Token:
        handle = query.parent_window_handle
        try:
            result = app.acquire_token_interactive(
                list(query.scopes),
                prompt=prompt,
                login_hint=query.login_hint,
                claims_challenge=query.claims,
                timeout=query.timeout,
                parent_window_handle=CONSOLE_WINDOW_HANDLE if handle is None else handle,
                enable_msa_passthrough=query.enable_msa_passthrough,
                auth_scheme=self._auth_scheme(query),
            )
        except ValueError as exc:
            if query.pop is not None:
                raise BackendError(
                    Kind.UNSUPPORTED, f"the native broker cannot issue PoP tokens here: {exc}"
                ) from exc
            raise BackendError(Kind.FAILED, str(exc)) from exc
        return self._token(check(result, silent=silent), query)

    def _auth_scheme(self, query: TokenQuery) -> Any:
        if query.pop is None:
            return None
        if sys.platform == "linux":
            raise BackendError(
                Kind.UNSUPPORTED,
                "msal does not support Proof-of-Possession through the native broker on Linux; "
                "the dbus backend (AUTHBROKER_BACKEND=dbus) forwards PoP requests to the broker",
            )
        import msal

        return msal.PopAuthScheme(
            http_method=query.pop.method, url=query.pop.url, nonce=query.pop.nonce
        )

    @staticmethod
    def _token(result: dict[str, Any], query: TokenQuery) -> Token:
        token = to_token(result, query)
        if query.pop is not None and token.token_type.lower() != "pop":
            raise BackendError(Kind.UNSUPPORTED, "the broker returned a bearer token, not PoP")
        return token

    def close(self) -> None:
        self._apps.clear()
