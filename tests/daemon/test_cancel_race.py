"""A cancel that lands while the device-code prompt is being delivered (the caller's signal,
then a desktop notification over a fresh D-Bus connection) still ends the sign-in at once.

Python 3.11's ``asyncio.wait_for`` swallows a cancel that arrives just as the awaited call
finishes, and jeepney's connection set-up and teardown can swallow one too: the sign-in then
polled on for minutes while its caller waited. The cancel is sent a growing number of event-loop
iterations after the prompt, so it lands at every point of the delivery."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt
from authbroker.daemon.handler import CallContext
from authbroker.daemon.signin import SignIn
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import auth, make_core
from fixtures.desktop_notifications import NotificationServer

STEPS = range(80)  # event-loop iterations between the prompt and the cancel


async def cancelled_after(core, steps: int) -> float:
    """Seconds from the cancel to the sign-in's USER_CANCELED answer (inf: no answer)."""
    cancelled_at: list[float] = []
    cancels: set[asyncio.Task[None]] = set()

    async def cancel_later() -> None:
        for _ in range(steps):
            await asyncio.sleep(0)
        cancelled_at.append(time.monotonic())
        core.cancel_interactive(call)  # what the caller's CancelInteractiveFlow does

    async def announce(_prompt: DeviceCodePrompt) -> None:
        cancels.add(asyncio.create_task(cancel_later()))

    call = CallContext(correlation_id=f"race-{steps}", sender=":1.5", uid=0,
                       announce_device_code=announce)
    request = broker1.TokenRequest(auth(interactive=True), parent_window_handle=1)
    try:
        with pytest.raises(BrokerStatusError) as err:
            await asyncio.wait_for(
                core.handle(broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, call), 5)
    except TimeoutError:
        return float("inf")
    assert err.value.status == broker1.Status.USER_CANCELED
    return time.monotonic() - cancelled_at[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("desktop", [False, True], ids=["no-notifications", "notifications"])
def test_a_cancel_at_any_point_of_the_prompt_ends_the_sign_in(authority, dbus_session,
                                                              desktop: bool) -> None:
    async def scenario() -> list[tuple[int, float]]:
        core = make_core(authority.authority, None, ui="device-code", timeout=60)
        try:
            waits = [(steps, await cancelled_after(core, steps)) for steps in STEPS]
        finally:
            await core.aclose()
        return [(steps, took) for steps, took in waits if took > 2]

    with NotificationServer(dbus_session.address) if desktop else contextlib.nullcontext():
        late = asyncio.run(scenario())
    assert late == []  # (iterations before the cancel, seconds it took to answer)


def test_a_flow_that_swallows_its_cancel_does_not_hold_up_the_answer() -> None:
    async def swallows_once() -> dict[str, str]:
        with contextlib.suppress(asyncio.CancelledError):  # as jeepney's teardown does
            await asyncio.sleep(30)
        await asyncio.sleep(4)
        return {}

    async def scenario() -> float:
        sign_in = SignIn("stubborn", ":1.5")
        asyncio.get_running_loop().call_later(0.2, sign_in.cancel)
        started = time.monotonic()
        with pytest.raises(BrokerStatusError) as err:
            await sign_in.run(swallows_once(), timeout=60)
        assert err.value.status == broker1.Status.USER_CANCELED
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 3
