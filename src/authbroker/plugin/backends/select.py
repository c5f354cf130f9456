"""Which backend a credential uses, and what happens when it turns out not to work.

Order: ``AUTHBROKER_BACKEND`` (environment, then config file) first if set; then ``native`` on
Windows and macOS; ``dbus`` on Linux and WSL; ``browser`` last everywhere. A candidate is skipped
when its probe gives a reason, or dropped when it fails with ``Kind.UNAVAILABLE`` at use; every
reason is kept (``reasons``) so that ``doctor`` and error messages can say why. Nothing here does
I/O: the drivers run the probes (blocking or in a thread).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from authbroker import config
from authbroker.plugin.backends.base import BackendError, Kind

NAMES = ("native", "dbus", "browser")


def default_order(platform: str = sys.platform) -> list[str]:
    if platform.startswith("win") or platform == "darwin":
        return ["native", "browser"]
    return ["dbus", "browser"]


def configured_backend() -> str | None:
    value = (config.setting("backend") or "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in NAMES:
        raise BackendError(
            Kind.FAILED,
            f"{config.BACKEND}={value!r} is not a backend; use one of {', '.join(NAMES)} or 'auto'",
        )
    return value


def probe_for(name: str) -> Callable[[], str | None]:
    """The function telling why ``name`` is unavailable (None when it may be used)."""
    if name == "dbus":
        from authbroker.plugin.backends.dbus import unavailable_reason as dbus_reason

        return dbus_reason
    if name == "browser":
        from authbroker.plugin.backends.browser import unavailable_reason as browser_reason

        return browser_reason
    return lambda: None  # native probes itself on first use (starting pymsalruntime is costly)


class Selection:
    """The candidates of one credential, in order, with the reasons for dropping each."""

    def __init__(self, platform: str = sys.platform) -> None:
        self._platform = platform
        self._order: list[str] | None = None
        self.reasons: dict[str, str] = {}

    def order(self) -> list[str]:
        if self._order is None:
            chosen = configured_backend()
            base = default_order(self._platform)
            self._order = [chosen, *[n for n in NAMES if n != chosen]] if chosen else base
        return self._order

    def candidates(self) -> list[str]:
        return [name for name in self.order() if name not in self.reasons]

    def drop(self, name: str, reason: str) -> None:
        self.reasons[name] = reason

    def exhausted_error(self) -> BackendError:
        detail = "; ".join(f"{name}: {why}" for name, why in self.reasons.items())
        return BackendError(Kind.UNAVAILABLE, f"no authentication backend is usable ({detail})")


def diagnose(platform: str = sys.platform) -> list[tuple[str, str | None]]:
    """Every backend in this process's order with why it is unusable (None: usable).

    For ``authbroker doctor``: unlike a credential, this probes ``native`` too, which imports
    (and so starts) pymsalruntime — up to ~5 s when no broker answers its Ping.
    """
    from authbroker.plugin.backends.native import unavailable_reason as native_reason

    probes = {"native": native_reason}
    return [(name, probes.get(name, probe_for(name))()) for name in Selection(platform).order()]
