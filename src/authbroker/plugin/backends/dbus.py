"""The ``dbus`` backend: our pure-Python Broker1 client, to whichever service owns the name.

No GTK, WebKit or pymsalruntime: just ``authbroker.client`` (jeepney) speaking
``com.microsoft.identity.broker1``. Blocking and async twins share the conversions below; the
broker owns all UI (browser or device code), so nothing here writes to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from authbroker import broker1, entra
from authbroker.broker1 import Account, AuthParameters, PopParams, Status, TokenResult
from authbroker.errors import AuthBrokerError, BrokerStatusError, BrokerUnavailableError
from authbroker.plugin.backends.base import (
    BackendError,
    Kind,
    Token,
    TokenQuery,
    Unusable,
    account_of,
    reason_text,
)

NAME = "dbus"
_LOGGER = logging.getLogger(__name__)

_INTERACTION = {Status.INTERACTION_REQUIRED, Status.ACCOUNT_UNUSABLE, Status.ACCOUNT_NOT_FOUND}
_CANCELLED = {Status.USER_CANCELED, Status.APPLICATION_CANCELED}
_UNAVAILABLE = {Status.REQUIRED_BROKER_MISSING, Status.FALLBACK_TO_NATIVE_MSAL}


INSTALL_FIX = "run `authbroker install-service` (or start `authbroker daemon`)"


NO_BUS_FIX = (
    "run it inside a desktop session, or set DBUS_SESSION_BUS_ADDRESS to a running session bus"
)


def session_bus_error() -> str | None:
    """Why the session bus cannot be reached (None: it can)."""
    from jeepney.io.blocking import open_dbus_connection

    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "DBUS_SESSION_BUS_ADDRESS is unset"
    try:
        open_dbus_connection("SESSION", auth_timeout=2.0).close()
    except (OSError, KeyError, ValueError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def why_unavailable() -> Unusable:
    """None when ``com.microsoft.identity.broker1`` is owned or activatable on the session bus."""
    from authbroker.client import BrokerClient

    no_bus = session_bus_error()
    if no_bus:
        return f"no usable session bus ({no_bus})", NO_BUS_FIX
    try:
        with BrokerClient(timeout=5.0) as client:
            if client.is_available():
                return None
    except (OSError, AuthBrokerError, ValueError) as exc:
        return f"no usable session bus ({exc})", NO_BUS_FIX
    return f"nothing owns or can activate {broker1.BUS_NAME} on the session bus", INSTALL_FIX


def unavailable_reason() -> str | None:
    return reason_text(why_unavailable())


def auth_parameters(
    query: TokenQuery, account: Account | None, *, prompt: str = ""
) -> AuthParameters:
    pop = None
    if query.pop is not None:
        pop = PopParams(
            http_method=query.pop.method.upper(),
            uri_host=query.pop.host,
            uri_path=query.pop.path,
            nonce=query.pop.nonce,
            home_account_id=account.home_account_id if account else "",
        )
    return AuthParameters(
        client_id=query.client_id,
        requested_scopes=tuple(query.scopes),
        authority=query.authority_url,
        authorization_type=(
            broker1.AuthorizationType.INTERACTIVE
            if prompt
            else broker1.AuthorizationType.CACHED_REFRESH_TOKEN
        ),
        account=account,
        username=account.username if account else (query.login_hint or ""),
        is_sign_in=account is None,
        decoded_claims=entra.merge_claims(query.claims, enable_cae=query.enable_cae),
        pop_params=pop,
        extra_query=dict(query.extra_query),
        parent_window=window_handle(query),
        prompt=prompt,
    )


def window_handle(query: TokenQuery) -> int | None:
    """An integer window handle, or None (msal's CONSOLE_WINDOW_HANDLE is a sentinel object)."""
    handle = query.parent_window_handle
    return handle if isinstance(handle, int) and not isinstance(handle, bool) else None


def to_token(result: TokenResult, query: TokenQuery) -> Token:
    claims: Mapping[str, Any] = {}
    if result.id_token:
        claims = entra.id_token_claims(result.id_token)
        if not claims:
            raise BackendError(Kind.FAILED, "the broker returned an unreadable id_token")
    is_pop = result.access_token_type == broker1.AccessTokenType.POP
    if query.pop is not None and not is_pop:
        raise BackendError(
            Kind.UNSUPPORTED,
            "the broker did not issue a Proof-of-Possession token (it answered with a bearer "
            "token, which is not returned in its place)",
        )
    environment = urlparse(query.authority).netloc
    account = result.account or account_of(claims, result.client_info, environment)
    return Token(
        access_token=result.access_token,
        expires_on=int(result.expires_on),
        token_type="pop" if is_pop else "Bearer",
        id_token_claims=claims,
        client_info=result.client_info,
        account=account,
    )


def translate(exc: BaseException) -> BackendError:
    """A client-side exception as a BackendError (the wire → client edge)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, BrokerStatusError):
        message = exc.context or "the broker reported an error"
        if exc.status in _INTERACTION:
            return BackendError(Kind.INTERACTION_REQUIRED, message)
        if exc.status in _CANCELLED:
            return BackendError(Kind.CANCELLED, message)
        if exc.status in _UNAVAILABLE:
            return BackendError(Kind.UNAVAILABLE, message)
        if query_is_pop_refusal(message):
            return BackendError(Kind.UNSUPPORTED, message)
        return BackendError(Kind.FAILED, message)
    if isinstance(exc, BrokerUnavailableError | OSError | ConnectionError):
        return BackendError(Kind.UNAVAILABLE, f"the broker cannot be reached: {exc}")
    if isinstance(exc, AuthBrokerError):
        return BackendError(Kind.FAILED, str(exc))
    return BackendError(Kind.FAILED, f"unexpected broker failure: {type(exc).__name__}: {exc}")


def query_is_pop_refusal(message: str) -> bool:
    lowered = message.lower()
    return ("pop" in lowered or "proof-of-possession" in lowered) and "support" in lowered


def _interactive_error(exc: BaseException, query: TokenQuery, started: float) -> BackendError:
    """A sign-in that ran out of time is the person's timeout, not a missing broker."""
    if isinstance(exc, BrokerUnavailableError) and time.monotonic() - started >= query.timeout - 1:
        return BackendError(
            Kind.FAILED,
            f"Timed out after waiting {query.timeout:g} seconds for the user to authenticate",
        )
    return translate(exc)


class DBusBackend:
    name = NAME

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()  # one blocking D-Bus connection: one call at a time

    def _broker(self) -> Any:
        if self._client is None:
            from authbroker.client import BrokerClient

            self._client = BrokerClient()
        return self._client

    def silent(self, query: TokenQuery, account: Account | None) -> Token:
        try:
            with self._lock:
                result = self._broker().acquire_token_silently(auth_parameters(query, account))
        except Exception as exc:
            raise translate(exc) from exc
        return to_token(result, query)

    def interactive(self, query: TokenQuery, *, prompt: str) -> Token:
        """One sign-in on its own connection, bounded by the credential's ``timeout``."""
        from authbroker.client import BrokerClient

        auth = auth_parameters(query, None, prompt=prompt)
        handle = window_handle(query)
        started = time.monotonic()
        try:
            with BrokerClient(timeout=query.timeout) as client:
                try:
                    result = client.acquire_token_interactively(
                        auth, parent_window_handle=1 if handle is None else handle
                    )
                except BrokerUnavailableError:
                    if time.monotonic() - started >= query.timeout - 1:
                        with contextlib.suppress(Exception):
                            client.cancel_interactive_flow()
                    raise
        except Exception as exc:
            raise _interactive_error(exc, query, started) from exc
        return to_token(result, query)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()


class AsyncDBusBackend:
    name = NAME

    def __init__(self) -> None:
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _broker(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # a connection belongs to the loop that opened it: a new loop gets its own
            from authbroker.client import AsyncBrokerClient

            self._client, self._loop = AsyncBrokerClient(), loop
        return self._client

    async def silent(self, query: TokenQuery, account: Account | None) -> Token:
        try:
            result = await self._broker().acquire_token_silently(auth_parameters(query, account))
        except Exception as exc:
            raise translate(exc) from exc
        return to_token(result, query)

    async def interactive(self, query: TokenQuery, *, prompt: str) -> Token:
        from authbroker.client import AsyncBrokerClient

        auth = auth_parameters(query, None, prompt=prompt)
        handle = window_handle(query)
        started = time.monotonic()
        try:
            async with AsyncBrokerClient(timeout=query.timeout) as client:
                result = await client.acquire_token_interactively(
                    auth, parent_window_handle=1 if handle is None else handle
                )
        except Exception as exc:
            raise _interactive_error(exc, query, started) from exc
        return to_token(result, query)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
