"""The contract between the D-Bus façade (service.py) and the broker core (core.py).

The service parses each call into a typed ``ipc`` request, checks the caller, and awaits
``Handler.handle``. The handler returns a typed ``ipc`` result or raises ``ipc.BrokerError``;
the service turns either into the reply JSON. Nothing here knows about D-Bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from authbroker import ipc


@dataclass(frozen=True)
class DeviceCodePrompt:
    """What a person needs to finish a device-code sign-in (never a secret)."""

    verification_uri: str
    user_code: str
    message: str
    expires_on: float  # epoch seconds

    def to_wire(self) -> dict[str, Any]:
        return {
            "verificationUri": self.verification_uri,
            "userCode": self.user_code,
            "message": self.message,
            "expiresOn": int(self.expires_on),
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> DeviceCodePrompt:
        return cls(
            verification_uri=str(obj.get("verificationUri", "")),
            user_code=str(obj.get("userCode", "")),
            message=str(obj.get("message", "")),
            expires_on=float(obj.get("expiresOn", 0)),
        )


async def _no_prompt(prompt: DeviceCodePrompt) -> None:
    return None


@dataclass(frozen=True)
class CallContext:
    """Who called and how to reach them while the call runs."""

    correlation_id: str
    sender: str = ""  # the caller's unique bus name
    uid: int = -1  # from the bus (GetConnectionUnixUser), never from the message
    #: Shows a device-code prompt to the caller (a signal on ipc.UI_INTERFACE).
    announce_device_code: Callable[[DeviceCodePrompt], Awaitable[None]] = field(
        default=_no_prompt, repr=False
    )


class Handler(Protocol):
    """Broker1 methods and our own ``ipc.UiMethod``s alike (unknown ones: a BrokerError)."""

    async def handle(
        self, method: ipc.AnyMethod, request: ipc.Request, ctx: CallContext
    ) -> ipc.Result: ...

    async def aclose(self) -> None: ...
