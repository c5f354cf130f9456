"""The desktop notification that shows a device-code prompt (org.freedesktop.Notifications).

Best effort: it is shown only when a notification server owns its name on the session bus, and
the caller's signal and the log carry the prompt anyway. It opens its own jeepney connection,
whose set-up and teardown swallow a cancel (``DBusRouter.__aexit__``), so a sign-in must run it
as a task of its own, shielded (see ``signin.Interaction._announce``), never inline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from authbroker.broker1 import DeviceCodePrompt

log = logging.getLogger(__name__)

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"


async def notify_quietly(prompt: DeviceCodePrompt, timeout: float) -> None:
    """:func:`notify_desktop` within ``timeout`` seconds; a failure is logged at DEBUG only."""
    try:
        async with asyncio.timeout(timeout):
            await notify_desktop(prompt)
    except Exception as exc:  # best effort: the caller and the log have the prompt
        log.debug("no desktop notification: %r", exc)


async def notify_desktop(prompt: DeviceCodePrompt) -> bool:
    """A desktop notification, only if a notification server owns its name on the bus."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    from jeepney.io.asyncio import DBusRouter, open_dbus_connection

    conn = await open_dbus_connection("SESSION")
    try:
        return await _notify(DBusRouter(conn), prompt)
    finally:
        await conn.close()  # also when cancelled (jeepney's open_dbus_router leaks it then)


async def _notify(router: Any, prompt: DeviceCodePrompt) -> bool:
    """Ask the notification server (if there is one) through ``router`` to show ``prompt``."""
    from jeepney import DBusAddress, new_method_call
    from jeepney.bus_messages import message_bus

    async with router:
        reply = await router.send_and_get_reply(message_bus.NameHasOwner(NOTIFICATIONS_NAME))
        if not reply.body[0]:
            return False
        address = DBusAddress(
            "/org/freedesktop/Notifications",
            bus_name=NOTIFICATIONS_NAME,
            interface=NOTIFICATIONS_NAME,
        )
        hints: Mapping[str, Any] = {"urgency": ("y", 2)}  # critical: stays until dismissed
        body = f"Open {prompt.verification_uri} and enter the code {prompt.user_code}"
        await router.send_and_get_reply(
            new_method_call(
                address,
                "Notify",
                "susssasa{sv}i",
                ("authbroker", 0, "dialog-password", "Sign-in required", body, [], hints,
                 int(max(prompt.expires_on - time.time(), 60) * 1000)),
            )
        )
    return True
