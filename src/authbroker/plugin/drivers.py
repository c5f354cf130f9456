"""The blocking driver of ``PluginCore.flow`` (the awaiting twin is ``plugin_run_async``).

A runner owns the credential's backends: it creates them on first use (probing availability
then, never in a constructor), runs each operation, and when a backend reports
``Kind.UNAVAILABLE`` drops it (keeping the reason) and repeats the operation on the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from authbroker.plugin.backends.base import Backend, BackendError, Kind, Token
from authbroker.plugin.backends.select import Selection, probe_for
from authbroker.plugin.core import Interactive, Op, Silent

_LOGGER = logging.getLogger("azure.identity.broker")


def _drop(selection: Selection, name: str, reason: str) -> None:
    _LOGGER.info("authentication backend %r is unavailable: %s", name, reason)
    selection.drop(name, reason)


class SyncRunner:
    def __init__(self, make: Callable[[str], Backend], selection: Selection | None = None) -> None:
        self._make = make
        self.selection = selection or Selection()
        self._backends: dict[str, Backend] = {}
        self.probe = probe_for

    def backend(self) -> Backend:
        """The first usable candidate (probing candidates not yet tried)."""
        for name in self.selection.candidates():
            if name in self._backends:
                return self._backends[name]
            reason = self.probe(name)()
            if reason:
                _drop(self.selection, name, reason)
                continue
            self._backends[name] = self._make(name)
            return self._backends[name]
        raise self.selection.exhausted_error()

    def execute(self, op: Op, query: Any) -> Token:
        while True:
            backend = self.backend()
            try:
                if isinstance(op, Silent):
                    return backend.silent(query, op.account)
                assert isinstance(op, Interactive)
                return backend.interactive(query, prompt=op.prompt)
            except BackendError as exc:
                if exc.kind is not Kind.UNAVAILABLE:
                    raise
                _drop(self.selection, backend.name, exc.message)

    def run(self, flow: Generator[Op, Token, Token], query: Any) -> Token:
        outcome: Token | None = None
        failure: BackendError | None = None
        while True:
            try:
                op = flow.throw(failure) if failure is not None else flow.send(outcome)  # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value
            outcome, failure = None, None
            try:
                outcome = self.execute(op, query)
            except BackendError as exc:
                failure = exc

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
