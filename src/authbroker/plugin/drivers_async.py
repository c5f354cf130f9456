"""The awaiting driver of ``PluginCore.flow``: the twin of ``plugin_run.SyncRunner``.

Same selection and fallback rules; blocking backends (msal) run in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

from authbroker.plugin.backends.base import AsyncBackend, Backend, BackendError, Kind, Token
from authbroker.plugin.backends.select import Selection, probe_for
from authbroker.plugin.core import Interactive, Op, Silent
from authbroker.plugin.drivers import _drop


class ThreadedBackend:
    """A blocking backend (msal) seen from asyncio: each call runs in a worker thread."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.name = backend.name

    async def silent(self, query: Any, account: Any) -> Token:
        return await asyncio.to_thread(self._backend.silent, query, account)

    async def interactive(self, query: Any, *, prompt: str) -> Token:
        return await asyncio.to_thread(self._backend.interactive, query, prompt=prompt)

    async def close(self) -> None:
        self._backend.close()


class AsyncRunner:
    def __init__(
        self, make: Callable[[str], AsyncBackend], selection: Selection | None = None
    ) -> None:
        self._make = make
        self.selection = selection or Selection()
        self._backends: dict[str, AsyncBackend] = {}
        self.probe = probe_for

    async def backend(self) -> AsyncBackend:
        for name in self.selection.candidates():
            if name in self._backends:
                return self._backends[name]
            reason = await asyncio.to_thread(self.probe(name))
            if reason:
                _drop(self.selection, name, reason)
                continue
            self._backends[name] = self._make(name)
            return self._backends[name]
        raise self.selection.exhausted_error()

    async def execute(self, op: Op, query: Any) -> Token:
        while True:
            backend = await self.backend()
            try:
                if isinstance(op, Silent):
                    return await backend.silent(query, op.account)
                assert isinstance(op, Interactive)
                return await backend.interactive(query, prompt=op.prompt)
            except BackendError as exc:
                if exc.kind is not Kind.UNAVAILABLE:
                    raise
                _drop(self.selection, backend.name, exc.message)

    async def run(self, flow: Generator[Op, Token, Token], query: Any) -> Token:
        outcome: Token | None = None
        failure: BackendError | None = None
        while True:
            try:
                op = flow.throw(failure) if failure is not None else flow.send(outcome)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value
            outcome, failure = None, None
            try:
                outcome = await self.execute(op, query)
            except BackendError as exc:
                failure = exc

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
        self._backends.clear()
