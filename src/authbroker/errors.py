"""The one error tree of authbroker; every error says what the caller should do next.

::

    AuthBrokerError                 base; ``message`` and a ``hint`` (what to do about it)
    ├── ConfigurationError          a setting or file is wrong: fix the configuration
    ├── BrokerUnavailableError      no broker answers on the bus (or the bus is missing)
    ├── BrokerProtocolError         a message breaks the Broker1 protocol (also a ValueError)
    ├── BrokerStatusError           the broker's error object: status, context, code, tag
    └── NameTakenError              another process owns the broker's bus name

The local authority keeps its own Entra-shaped errors (``authbroker.authority.errors``): they
are what it answers on the wire, not exceptions for our callers. Parts below add subclasses
where a caller can act on the difference (the plugin's ``BackendError``, the scripted user's
``SignInError``).
"""

from __future__ import annotations

import zlib


class AuthBrokerError(Exception):
    """Base of every authbroker error. ``hint`` tells the user what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigurationError(AuthBrokerError):
    """A setting or file is wrong; fixing the configuration fixes the problem."""


class BrokerUnavailableError(AuthBrokerError):
    """No broker service answers on the session bus."""


class BrokerProtocolError(AuthBrokerError, ValueError):
    """A request or reply that the Broker1 protocol does not allow. ``str()`` is safe to log."""


class NameTakenError(AuthBrokerError):
    """Someone else owns the broker's bus name."""


def site_tag(site: str) -> int:
    """A stable integer naming where an error was raised (pymsalruntime wants an int ``tag``)."""
    return zlib.crc32(site.encode()) & 0x7FFFFFFF


class BrokerStatusError(AuthBrokerError):
    """An error object of the Broker1 protocol: raised by the daemon, raised again by clients.

    ``status`` is the broker's status number (``authbroker.broker1.Status``); ``context`` is
    shown to people and must never contain a token, password or key.
    """

    def __init__(
        self,
        status: int,
        context: str,
        *,
        error_code: int = 0,
        tag: int | str = "broker",
        sub_status: int = 0,
    ) -> None:
        super().__init__(context)
        self.status = status
        self.context = context
        self.error_code = int(error_code)
        self.tag = site_tag(tag) if isinstance(tag, str) else int(tag)
        self.sub_status = int(sub_status)

    def __repr__(self) -> str:
        return (f"BrokerStatusError(status={self.status!r}, code={self.error_code}, "
                f"{self.context!r})")
