"""The blocking ``InteractiveBrowserBrokerCredential`` (a subclass of azure-identity's)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessTokenInfo, TokenRequestOptions

from azure.identity import InteractiveBrowserCredential

from . import _compat
from ._call import TokenCall


class PopTokenRequestOptions(TokenRequestOptions, total=False):
    """Options for a Proof-of-Possession token request.

    ``pop``: a mapping with ``resource_request_method``, ``resource_request_url`` and ``nonce``
    asks for a Signed HTTP Request token. Where the broker in use cannot issue one, the request
    fails with ``ClientAuthenticationError``; it is never turned into a bearer token.
    """

    pop: bool | Mapping[str, str]


class InteractiveBrowserBrokerCredential(InteractiveBrowserCredential):
    """Signs a user in through an authentication broker, else through the browser.

    Accepts every keyword of :class:`azure.identity.InteractiveBrowserCredential` plus
    ``parent_window_handle`` (forwarded to the broker; an X11 window id on Linux, the console
    handle by default), ``use_default_broker_account`` (try the broker's default account
    silently before showing the account picker), ``enable_msa_passthrough`` and
    ``disable_interactive_fallback`` (never show UI; raise ``AuthenticationRequiredError``).

    The broker is reached through the backend ``AUTHBROKER_BACKEND`` names (``dbus``,
    ``native`` or ``browser``: that one only; when it cannot be used, ``get_token`` fails at
    once, naming why and the fix) or, unset or ``auto``, ``native`` (WAM / macOS broker) on
    Windows and macOS, our D-Bus client on Linux when a broker owns or can activate
    ``com.microsoft.identity.broker1``, and msal's browser flow otherwise. With no broker and no
    browser it behaves as ``InteractiveBrowserCredential``: its pipeline (``policies``,
    ``transport``) carries the authority requests, then ``CredentialUnavailableError``.
    """

    def __init__(self, **kwargs: Any) -> None:
        parent_window_handle = kwargs.pop("parent_window_handle", None)
        enable_msa_passthrough = bool(kwargs.pop("enable_msa_passthrough", False))
        use_default_broker_account = bool(kwargs.pop("use_default_broker_account", False))
        disable_interactive_fallback = bool(kwargs.pop("disable_interactive_fallback", False))
        super().__init__(**kwargs)
        # imported here, not at module level: `import azure.identity.broker` stays cheap
        from authbroker.plugin.core import PluginCore, check_authority

        check_authority(self._authority, self._tenant_id)
        self._parent_window_handle = parent_window_handle
        self._enable_msa_passthrough = enable_msa_passthrough
        self._use_default_broker_account = use_default_broker_account
        self._disable_interactive_fallback = disable_interactive_fallback
        self._plugin = PluginCore(
            self._plugin_options(),
            self._auth_record,
            resolve_tenant=_compat.resolve_tenant,
            build_auth_record=_compat._build_auth_record,
        )
        self._start_driver()

    def _start_driver(self) -> None:
        from authbroker.plugin.drivers import SyncDriver

        self._driver = SyncDriver(self._make_backend)
        self._flight = threading.RLock()

    # -- shared with the aio twin --------------------------------------------------------------

    def _plugin_options(self) -> Any:
        from authbroker.plugin.core import Options

        return Options(
            client_id=self._client_id,
            authority=self._authority,
            tenant_id=self._tenant_id,
            additionally_allowed_tenants=tuple(self._additionally_allowed_tenants),
            login_hint=self._login_hint,
            timeout=float(self._timeout),
            redirect_port=self._parsed_url.port if self._parsed_url else None,
            parent_window_handle=self._parent_window_handle,
            enable_msa_passthrough=self._enable_msa_passthrough,
            use_default_broker_account=self._use_default_broker_account,
            disable_interactive_fallback=self._disable_interactive_fallback,
            enable_support_logging=bool(self._enable_support_logging),
        )

    def _msal_settings(self) -> Any:
        from authbroker.plugin.backends.msal_apps import MsalSettings

        def cache_for(is_cae: bool) -> Any:
            cache = self._cae_cache if is_cae else self._cache
            return cache or self._initialize_cache(is_cae=is_cae)

        return MsalSettings(
            http_client=self._client,
            instance_discovery=self._instance_discovery,
            enable_pii_log=bool(self._enable_support_logging),
            cache_for=cache_for,
        )

    def _make_backend(self, name: str) -> Any:
        if name == "dbus":
            from authbroker.plugin.backends.dbus import DBusBackend

            return DBusBackend()
        if name == "native":
            from authbroker.plugin.backends.native import NativeBackend

            return NativeBackend(self._msal_settings())
        from authbroker.plugin.backends.browser import BrowserBackend

        return BrowserBackend(self._msal_settings())

    # -- azure-identity hooks ------------------------------------------------------------------

    def _get_token_base(
        self,
        *scopes: str,
        options: TokenRequestOptions | None = None,
        base_method_name: str = "get_token_info",
        **kwargs: Any,
    ) -> AccessTokenInfo:
        call = TokenCall(self, type(self).__name__, scopes, options, base_method_name, kwargs)
        with call:
            if call.missed():
                with self._flight:  # one broker round at a time: no second sign-in window
                    if call.missed():
                        call.accept(self._driver.run(*call.flow()))
        return call.info  # type: ignore[return-value]

    def _request_token(self, *scopes: str, **kwargs: Any) -> dict[str, Any]:
        """One interactive sign-in (azure-identity's hook); returns msal's result shape."""
        import time

        from authbroker.plugin.core import Interactive

        query = self._plugin.query(scopes, kwargs, kwargs)
        token = self._driver.execute(Interactive("select_account"), query)
        return token.as_msal_result(int(time.time()))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for key in ("_driver", "_flight"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._start_driver()

    def close(self) -> None:
        self._driver.close()
        super().close()

    def __exit__(self, *args: Any) -> None:
        self._driver.close()
        super().__exit__(*args)
