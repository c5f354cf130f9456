"""azure-core pipeline policies: a resource's PoP nonce challenge answered with an SHR.

``PopTokenPolicy`` (blocking) and ``AsyncPopTokenPolicy`` (asyncio) do what azure-core's
``BearerTokenCredentialPolicy`` does for bearer tokens, for Proof-of-Possession::

    from azure.core import PipelineClient
    from authbroker.plugin.policy import PopTokenPolicy

    client = PipelineClient(url, policies=[..., PopTokenPolicy(credential, scope), ...])

A request goes out unsigned the first time a host is seen. A 401 whose ``WWW-Authenticate``
carries a ``PoP`` challenge with a nonce makes the policy ask the credential for an SHR for that
very request (``get_token_info(scope, options={"pop": {method, url, nonce}})``) and send it
again, once, with ``Authorization: PoP <shr>``. The last nonce of each host is remembered, so
later requests go signed at once; when the resource refuses it (a 401 with a new nonce), the
policy signs again for the new one, still once. Any other answer (a 401 without a PoP
challenge, a refused retry) is returned as it is. A token that is not PoP is never sent.
"""

from __future__ import annotations

import threading
from typing import Any, cast
from urllib.parse import urlparse

from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy, HTTPPolicy

from authbroker.plugin.challenge import pop_nonce

__all__ = ["AsyncPopTokenPolicy", "PopChallenges", "PopTokenPolicy"]

AUTHORIZATION = "Authorization"
WWW_AUTHENTICATE = "WWW-Authenticate"


def challenge_nonce(response: PipelineResponse[Any, Any]) -> str | None:
    """The nonce a 401 answer asks to be signed (None: not a PoP nonce challenge)."""
    http = response.http_response
    if http.status_code != 401:
        return None
    headers = http.headers
    getall = getattr(headers, "getall", None)  # aiohttp's multidict keeps repeated headers apart
    values = getall(WWW_AUTHENTICATE, []) if getall is not None else [headers.get(WWW_AUTHENTICATE)]
    return pop_nonce([value for value in values if value])


class PopChallenges:
    """The sans-I/O half shared by both policies: the nonce of each host, the token options."""

    def __init__(self, scopes: tuple[str, ...], *, enforce_https: bool = True) -> None:
        if not scopes:
            raise ValueError("a PoP policy needs at least one scope")
        self.scopes = scopes
        self.enforce_https = enforce_https
        self._nonces: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def host(url: str) -> str:
        return urlparse(url).netloc.lower()

    def check(self, request: PipelineRequest[Any]) -> None:
        if self.enforce_https and not request.http_request.url.lower().startswith("https"):
            raise ServiceRequestError(
                "PoP token authentication is not permitted for non-TLS protected (non-https) URLs."
            )

    def known_nonce(self, request: PipelineRequest[Any]) -> str | None:
        return self.known_nonce_of(request.http_request.url)

    def known_nonce_of(self, url: str) -> str | None:
        """The nonce remembered for ``url``'s host (None: its next request goes unsigned)."""
        with self._lock:
            return self._nonces.get(self.host(url))

    def remember(self, request: PipelineRequest[Any], nonce: str | None) -> None:
        self.remember_for(request.http_request.url, nonce)

    def remember_for(self, url: str, nonce: str | None) -> None:
        """Keep ``nonce`` for ``url``'s host (None: forget the host's nonce)."""
        with self._lock:
            if nonce:
                self._nonces[self.host(url)] = nonce
            else:
                self._nonces.pop(self.host(url), None)

    @staticmethod
    def options(request: PipelineRequest[Any], nonce: str) -> dict[str, Any]:
        """The credential's ``options`` asking for an SHR for exactly this request."""
        http = request.http_request
        pop = {"resource_request_method": http.method.upper(), "resource_request_url": http.url,
               "nonce": nonce}
        return {"pop": pop}

    @staticmethod
    def authorize(request: PipelineRequest[Any], info: AccessTokenInfo) -> None:
        if (info.token_type or "").lower() != "pop":
            raise ClientAuthenticationError(
                message="the credential returned a bearer token for a Proof-of-Possession "
                "request; it is not sent in place of a PoP token"
            )
        request.http_request.headers[AUTHORIZATION] = f"PoP {info.token}"

    def retry_nonce(
        self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any], sent: bool
    ) -> str | None:
        """The nonce to sign and retry with after ``response`` (None: return it as it is).

        A signed request (``sent``) refused without a new nonce forgets the host's nonce."""
        nonce = challenge_nonce(response)
        if nonce is None and sent and response.http_response.status_code == 401:
            self.remember(request, None)
        return nonce

    def retried(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any],
                nonce: str) -> PipelineResponse[Any, Any]:
        """After the one retry: keep the nonce it was accepted with, or forget the host's."""
        self.remember(request, None if response.http_response.status_code == 401 else nonce)
        return response


class PopTokenPolicy(HTTPPolicy[Any, Any]):
    """Signs requests with the credential's PoP tokens (a blocking ``SupportsTokenInfo``)."""

    def __init__(self, credential: SupportsTokenInfo, *scopes: str, **kwargs: Any) -> None:
        """``enforce_https=False`` allows plain-HTTP URLs (tests only)."""
        super().__init__()
        self._credential = credential
        self.challenges = PopChallenges(scopes, enforce_https=kwargs.get("enforce_https", True))

    def _sign(self, request: PipelineRequest[Any], nonce: str) -> None:
        info = self._credential.get_token_info(
            *self.challenges.scopes, options=cast(Any, self.challenges.options(request, nonce))
        )
        self.challenges.authorize(request, info)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        challenges = self.challenges
        challenges.check(request)
        known = challenges.known_nonce(request)
        if known:
            self._sign(request, known)
        response = self.next.send(request)
        nonce = challenges.retry_nonce(request, response, sent=bool(known))
        if nonce is None:
            return response
        self._sign(request, nonce)
        return challenges.retried(request, self.next.send(request), nonce)


class AsyncPopTokenPolicy(AsyncHTTPPolicy[Any, Any]):
    """The asyncio twin of :class:`PopTokenPolicy` (an ``AsyncSupportsTokenInfo``)."""

    def __init__(self, credential: AsyncSupportsTokenInfo, *scopes: str, **kwargs: Any) -> None:
        super().__init__()
        self._credential = credential
        self.challenges = PopChallenges(scopes, enforce_https=kwargs.get("enforce_https", True))

    async def _sign(self, request: PipelineRequest[Any], nonce: str) -> None:
        info = await self._credential.get_token_info(
            *self.challenges.scopes, options=cast(Any, self.challenges.options(request, nonce))
        )
        self.challenges.authorize(request, info)

    async def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        challenges = self.challenges
        challenges.check(request)
        known = challenges.known_nonce(request)
        if known:
            await self._sign(request, known)
        response = await self.next.send(request)
        nonce = challenges.retry_nonce(request, response, sent=bool(known))
        if nonce is None:
            return response
        await self._sign(request, nonce)
        return challenges.retried(request, await self.next.send(request), nonce)

