"""Recent callers: who has called the broker lately (bus name, pid, executable, client ids).

The broker notes every call it handles (:meth:`RecentCallers.seen`: a dict update, cheap on the
hot path); ``GetStatus`` lists them, most recent first. Bounded: the oldest caller is dropped
past :data:`MAX_CALLERS`. The executable is read once per caller from ``/proc/<pid>/exe`` (the
caller runs as our uid, so it is readable); nothing from a request body is kept but its client
id.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from authbroker import broker1
from authbroker.daemon.handler import CallContext

MAX_CALLERS = 32


def executable(pid: int | None) -> str:
    """The program a process runs ("" when unknown or gone)."""
    if pid is None:
        return ""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def client_id_of(request: broker1.Request) -> str:
    if isinstance(request, broker1.TokenRequest):
        return request.auth.client_id
    if isinstance(request, broker1.GetAccountsRequest | broker1.RemoveAccountRequest):
        return request.client_id
    return ""


@dataclass
class _Caller:
    sender: str
    pid: int | None
    executable: str
    calls: int = 0
    last_method: str = ""
    last_call_on: float = 0.0
    client_ids: list[str] = field(default_factory=list)


class RecentCallers:
    """The last :data:`MAX_CALLERS` callers by unique bus name."""

    def __init__(self) -> None:
        self._callers: OrderedDict[str, _Caller] = OrderedDict()

    def seen(self, ctx: CallContext, method: broker1.AnyMethod, request: broker1.Request) -> None:
        if not ctx.sender:
            return
        caller = self._callers.get(ctx.sender)
        if caller is None:
            caller = self._callers[ctx.sender] = _Caller(ctx.sender, ctx.pid, executable(ctx.pid))
            if len(self._callers) > MAX_CALLERS:
                self._callers.popitem(last=False)
        else:
            self._callers.move_to_end(ctx.sender)
        caller.calls += 1
        caller.last_method, caller.last_call_on = method.value, time.time()
        client_id = client_id_of(request)
        if client_id and client_id not in caller.client_ids and len(caller.client_ids) < 8:
            caller.client_ids.append(client_id)

    def listed(self) -> tuple[broker1.CallerStatus, ...]:
        """Most recent first."""
        return tuple(
            broker1.CallerStatus(c.sender, c.pid, c.executable, tuple(c.client_ids), c.calls,
                                 c.last_method, c.last_call_on)
            for c in reversed(self._callers.values())
        )
