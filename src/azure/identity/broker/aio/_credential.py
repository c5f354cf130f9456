"""The async ``InteractiveBrowserBrokerCredential`` (azure-identity has no async base to extend).

It implements azure-core's ``AsyncTokenCredential`` / ``AsyncSupportsTokenInfo`` protocols and
shares the sync credential's keyword handling and sans-I/O core; only the I/O differs (the
D-Bus backend awaits, msal's blocking calls run in a worker thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

from azure.identity import AuthenticationRecord, CredentialUnavailableError

from .._call import TokenCall
from .._compat import _DEFAULT_AUTHENTICATE_SCOPES, ALLOW_PROMPT
from .._credential import InteractiveBrowserBrokerCredential as _SyncCredential


class InteractiveBrowserBrokerCredential:
    """Async twin of :class:`azure.identity.broker.InteractiveBrowserBrokerCredential`.

    Same keywords, same behaviour; use ``async with`` or ``await credential.close()``.
    """

    def __init__(self, **kwargs: Any) -> None:
        from authbroker.plugin.drivers import AsyncDriver

        self._sync = _SyncCredential(**kwargs)
        self._plugin = self._sync._plugin
        self._driver = AsyncDriver(self._make_backend)
        self._flight = asyncio.Lock()

    def _make_backend(self, name: str) -> Any:
        if name == "dbus":
            from authbroker.plugin.backends.dbus import AsyncDBusBackend

            return AsyncDBusBackend()
        from authbroker.plugin.drivers import ThreadedBackend

        return ThreadedBackend(self._sync._make_backend(name))

    async def __aenter__(self) -> InteractiveBrowserBrokerCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the broker connection and the credential's HTTP client."""
        await self._driver.close()
        self._sync.close()

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Request an access token for ``scopes`` (see the sync credential)."""
        options: TokenRequestOptions = {"enable_cae": enable_cae}
        if claims:
            options["claims"] = claims
        if tenant_id:
            options["tenant_id"] = tenant_id
        info = await self._get_token_base(
            *scopes, options=options, base_method_name="get_token", **kwargs
        )
        return AccessToken(info.token, info.expires_on)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """Request an access token for ``scopes``; ``options`` may carry ``pop``."""
        return await self._get_token_base(
            *scopes, options=options, base_method_name="get_token_info"
        )

    async def authenticate(
        self,
        *,
        scopes: Iterable[str] | None = None,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AuthenticationRecord:
        """Sign a user in and return the AuthenticationRecord that restores the account."""
        if not scopes:
            default = _DEFAULT_AUTHENTICATE_SCOPES.get(self._sync._authority)
            if default is None:
                raise CredentialUnavailableError(
                    message="Authenticating in this environment requires a value for the "
                    "'scopes' keyword argument."
                )
            scopes = default
        await self.get_token(
            *scopes,
            claims=claims,
            tenant_id=tenant_id,
            enable_cae=enable_cae,
            **{ALLOW_PROMPT: True},
            **kwargs,
        )
        return self._plugin.record  # type: ignore[return-value]

    async def _get_token_base(
        self,
        *scopes: str,
        options: TokenRequestOptions | None = None,
        base_method_name: str = "get_token_info",
        **kwargs: Any,
    ) -> AccessTokenInfo:
        call = TokenCall(self._sync, type(self).__name__, scopes, options, base_method_name, kwargs)
        with call:
            if call.missed():
                async with self._flight:  # one broker round at a time: no second sign-in window
                    if call.missed():
                        call.accept(await self._driver.run(*call.flow()))
        return call.info  # type: ignore[return-value]
