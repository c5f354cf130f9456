"""The two drivers of the core's steps: ``SyncDriver`` blocks, ``AsyncDriver`` awaits.

They only perform steps (``Probe``, ``Make``, ``Call``); what to do next, including which
backend to fall back to, is decided in ``authbroker.plugin.core``. The sync driver never starts
an event loop, and the async one keeps the loop free: probes and blocking backends (msal) run in
worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any, cast

from authbroker.plugin.backends.base import AsyncBackend, Backend, BackendError, Token, TokenQuery
from authbroker.plugin.backends.select import Selection, probe_for
from authbroker.plugin.core import Done, Fallback, Make, Op, Probe, Step, resume


class SyncDriver:
    def __init__(self, make: Callable[[str], Backend], selection: Selection | None = None) -> None:
        self.fallback = Fallback(selection)
        self._make = make
        self.probe = probe_for

    def run(self, flow: Generator[Op, Token, Token], query: TokenQuery) -> Token:
        return cast(Token, self._drive(self.fallback.run(flow, query)))

    def execute(self, op: Op, query: TokenQuery) -> Token:
        return cast(Token, self._drive(self.fallback.perform(op, query)))

    def _drive(self, steps: Generator[Step, Any, Any]) -> Any:
        step = resume(steps)
        while not isinstance(step, Done):
            try:
                reply, failure = self._perform(step), None
            except BackendError as exc:
                reply, failure = None, exc
            step = resume(steps, reply, failure)
        return step.value

    def _perform(self, step: Step) -> Any:
        if isinstance(step, Probe):
            return self.probe(step.name)()
        if isinstance(step, Make):
            return self._make(step.name)
        return step.invoke()

    def close(self) -> None:
        for backend in self.fallback.release():
            backend.close()


class AsyncDriver:
    def __init__(
        self, make: Callable[[str], AsyncBackend], selection: Selection | None = None
    ) -> None:
        self.fallback = Fallback(selection)
        self._make = make
        self.probe = probe_for

    async def run(self, flow: Generator[Op, Token, Token], query: TokenQuery) -> Token:
        steps = self.fallback.run(flow, query)
        step = resume(steps)
        while not isinstance(step, Done):
            try:
                reply, failure = await self._perform(step), None
            except BackendError as exc:
                reply, failure = None, exc
            step = resume(steps, reply, failure)
        return cast(Token, step.value)

    async def _perform(self, step: Step) -> Any:
        if isinstance(step, Probe):
            return await asyncio.to_thread(self.probe(step.name))
        if isinstance(step, Make):
            return self._make(step.name)
        return await step.invoke()

    async def close(self) -> None:
        for backend in self.fallback.release():
            await backend.close()


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
