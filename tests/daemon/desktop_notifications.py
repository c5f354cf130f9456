"""A desktop notification server (``org.freedesktop.Notifications``) for the private test bus:
it records what the daemon asks it to show and can act on it, as a person reading it would."""

from __future__ import annotations

import threading
from collections.abc import Callable

from jeepney import MessageType, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"


class NotificationServer:
    def __init__(self, address: str,
                 on_notify: Callable[[str, str], None] | None = None) -> None:
        self.shown: list[tuple[str, str]] = []  # (summary, body)
        self._on_notify = on_notify
        self._conn = open_dbus_connection(address)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> NotificationServer:
        self._conn.send_and_get_reply(message_bus.RequestName(NAME))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            if msg.header.message_type is not MessageType.method_call:
                continue
            if msg.header.fields.get(3) == "Notify":  # header field 3: MEMBER
                summary, body = msg.body[3], msg.body[4]
                self.shown.append((summary, body))
                if self._on_notify is not None:
                    threading.Thread(target=self._on_notify, args=(summary, body),
                                     daemon=True).start()
            self._conn.send(new_method_return(msg, "u", (len(self.shown),)))
