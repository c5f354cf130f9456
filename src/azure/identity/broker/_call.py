"""One token request at the azure-core edge, shared by the sync and the async credential.

``TokenCall`` is the part of ``_get_token_base`` that does no I/O and holds no lock: the query,
the memo check, the flow to drive, accepting its token, and (as a context manager) turning any
failure into the azure-core error a caller sees, logged once. Each credential keeps only its own
lock and its one driver call around it, so neither twin runs the other's kind of code.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ._compat import ALLOW_PROMPT, within_dac

if TYPE_CHECKING:  # the plugin is imported on first use: `import azure.identity.broker` is cheap
    from azure.core.credentials import AccessTokenInfo

    from authbroker.plugin.backends.base import Token, TokenQuery
    from authbroker.plugin.core import Op, PluginCore

_LOGGER = logging.getLogger("azure.identity.broker")


class TokenCall:
    """One ``get_token``/``get_token_info`` of ``credential`` (the sync credential, whose core,
    flags and ``_auth_record`` both twins use)."""

    __slots__ = ("_allow_prompt", "_credential", "_plugin", "_request", "_where", "info", "query")

    def __init__(
        self,
        credential: Any,
        name: str,
        scopes: tuple[str, ...],
        options: Mapping[str, Any] | None,
        method: str,
        kwargs: dict[str, Any],
    ) -> None:
        if not scopes:
            raise ValueError(f"'{method}' requires at least one scope")
        self._allow_prompt = kwargs.pop(
            ALLOW_PROMPT, not credential._disable_automatic_authentication
        )
        self._credential = credential
        self._plugin: PluginCore = credential._plugin
        self._where = (name, method)
        self._request = (scopes, options or {}, kwargs)
        self.query: TokenQuery | None = None
        self.info: AccessTokenInfo | None = None

    def missed(self) -> bool:
        """True when the memo has no fresh token for this request (else it is ``info``)."""
        if self.query is None:
            self.query = self._plugin.query(*self._request)
        self.info = self._plugin.cached(self.query)
        return self.info is None

    def flow(self) -> tuple[Generator[Op, Token, Token], TokenQuery]:
        """The decision flow to drive for this request, and its query (after ``missed()``)."""
        assert self.query is not None, "missed() comes first"
        return self._plugin.flow(self.query, self._allow_prompt), self.query

    def accept(self, token: Token) -> None:
        assert self.query is not None, "missed() comes first"
        self.info = self._plugin.accept(self.query, token)
        self._credential._auth_record = self._plugin.record

    def __enter__(self) -> TokenCall:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if not isinstance(exc, Exception):
            return False  # success, or a cancellation / interrupt: not ours to translate
        from authbroker.plugin.translate import translate

        client_id = self._plugin.options.client_id
        error = translate(exc, self.query, client_id=client_id, in_dac=within_dac.get())
        _LOGGER.warning("%s.%s failed: %s", *self._where, error)
        if error is exc:
            return False
        raise error from exc
