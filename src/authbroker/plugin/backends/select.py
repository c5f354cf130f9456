"""Which backend a credential uses, and what happens when it turns out not to work.

``AUTHBROKER_BACKEND`` (environment, then config file) set to a backend means that backend
only: when it cannot be used the request fails (``Kind.FAILED``) naming the backend, why and the
fix, and nothing else is tried (no browser opens). Unset or ``auto``: ``native`` on Windows and
macOS, ``dbus`` on Linux and WSL, ``browser`` last everywhere. A candidate is skipped when its
probe gives a reason, or dropped when it fails with ``Kind.UNAVAILABLE`` at use; every reason
("why: fix") is kept (``reasons``) so that ``doctor`` and error messages can say why. The
browser's probe is its sign-in itself (see ``backends.browser``). Nothing here does I/O: the
drivers run the probes (blocking or in a thread).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from authbroker import config
from authbroker.plugin.backends.base import BackendError, Kind, Unusable, reason_text

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
    # native probes itself on first use (starting pymsalruntime is costly); the browser backend
    # finds out at sign-in, after the authority requests went through the credential's pipeline
    return lambda: None


class Selection:
    """The candidates of one credential, in order, with the reasons for dropping each."""

    def __init__(self, platform: str = sys.platform) -> None:
        self._platform = platform
        self._order: list[str] | None = None
        self.forced: str | None = None
        self.reasons: dict[str, str] = {}

    def order(self) -> list[str]:
        if self._order is None:
            self.forced = configured_backend()
            self._order = [self.forced] if self.forced else default_order(self._platform)
        return self._order

    def candidates(self) -> list[str]:
        return [name for name in self.order() if name not in self.reasons]

    def drop(self, name: str, reason: str) -> None:
        self.reasons[name] = reason

    def exhausted_error(self) -> BackendError:
        if self.forced:
            why = self.reasons.get(self.forced, "it is unavailable")
            return BackendError(
                Kind.FAILED,
                f"{config.BACKEND}={self.forced}: the {self.forced} backend cannot be used "
                f"here: {why}. (Unset {config.BACKEND} to let the plugin choose a backend.)",
            )
        detail = "; ".join(f"{name}: {why}" for name, why in self.reasons.items())
        return BackendError(Kind.UNAVAILABLE, f"no authentication backend is usable ({detail})")


def diagnosis(platform: str = sys.platform) -> list[tuple[str, Unusable]]:
    """Every backend in this process's order with ``(why, fix)`` when unusable (None: usable).

    For ``authbroker doctor``: unlike a credential, this probes ``native`` and ``browser`` up
    front; ``native`` imports (and so starts) pymsalruntime.
    """
    from authbroker.plugin.backends import browser, dbus, native

    probes = {"native": native.why_unavailable, "dbus": dbus.why_unavailable}
    probes["browser"] = browser.why_unavailable
    return [(name, probes[name]()) for name in Selection(platform).order()]


def diagnose(platform: str = sys.platform) -> list[tuple[str, str | None]]:
    """``diagnosis`` with each reason as one line ("why: fix")."""
    return [(name, reason_text(unusable)) for name, unusable in diagnosis(platform)]
