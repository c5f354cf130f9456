"""Handler and CallContext: the contract between the D-Bus façade and the broker behind it.

The service (service.py) parses each call into a typed ``broker1`` request, checks the
caller, and awaits ``Handler.handle``. The handler (broker.py) returns a typed ``broker1``
result or raises ``BrokerStatusError``; the service turns either into the reply JSON. Nothing
here knows about D-Bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt

__all__ = ["CallContext", "Handler"]


async def _no_prompt(prompt: DeviceCodePrompt) -> None:
    return None


@dataclass(frozen=True)
class CallContext:
    """Who called and how to reach them while the call runs."""

    correlation_id: str
    sender: str = ""  # the caller's unique bus name
    uid: int = -1  # from the bus (GetConnectionUnixUser), never from the message
    pid: int | None = None  # from the bus (GetConnectionUnixProcessID), listed by GetStatus
    #: Shows a device-code prompt to the caller (a signal on broker1.EXTENSION_INTERFACE).
    announce_device_code: Callable[[DeviceCodePrompt], Awaitable[None]] = field(
        default=_no_prompt, repr=False
    )


class Handler(Protocol):
    """Broker1 methods and our own ``broker1.UiMethod``s alike (unknown: a BrokerStatusError)."""

    async def handle(
        self, method: broker1.AnyMethod, request: broker1.Request, ctx: CallContext
    ) -> broker1.Result: ...

    def caller_left(self, sender: str) -> int:
        """``sender`` (a unique bus name) left the bus: end its sign-ins; how many there were."""
        ...

    async def aclose(self) -> None: ...
