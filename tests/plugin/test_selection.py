"""Backend choice and fallback, on a real private bus: AUTHBROKER_BACKEND means that backend
only (and fails fast, naming why and the fix), dbus when the name is owned or activatable,
browser otherwise, and a native backend that cannot load its libraries."""

from __future__ import annotations

import sys
import time
import webbrowser
from contextlib import closing

import pytest
from azure.core.exceptions import ClientAuthenticationError
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy

from authbroker.broker1 import BUS_NAME
from authbroker.plugin.backends import native
from authbroker.plugin.backends.select import Selection, default_order, diagnose
from authbroker.plugin.drivers import SyncDriver
from azure.identity import CredentialUnavailableError
from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker._compat import within_dac
from plugin.conftest import STORAGE_SCOPE, sign_ins


def chosen(**_: object) -> tuple[str, dict[str, str]]:
    """The backend a fresh credential would use here, and why the others were dropped."""
    driver = SyncDriver(lambda name: type("B", (), {"name": name})())
    return driver._drive(driver.fallback.backend()).name, driver.fallback.selection.reasons


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHBROKER_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")  # no config file either


def test_default_order_per_platform() -> None:
    assert default_order("win32") == ["native", "browser"]
    assert default_order("darwin") == ["native", "browser"]
    assert default_order("linux") == ["dbus", "browser"]


def test_environment_means_that_backend_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "native")
    assert Selection("linux").order() == ["native"]
    monkeypatch.setenv("AUTHBROKER_BACKEND", "browser")
    assert Selection("win32").order() == ["browser"]
    monkeypatch.setenv("AUTHBROKER_BACKEND", "auto")
    assert Selection("linux").order() == ["dbus", "browser"]  # auto: today's chain, unchanged
    assert Selection("darwin").order() == ["native", "browser"]


def test_unknown_backend_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "wam2")
    credential = InteractiveBrowserBrokerCredential(authority="https://127.0.0.1:9")
    with pytest.raises(ClientAuthenticationError, match="AUTHBROKER_BACKEND='wam2'"):
        credential.get_token(STORAGE_SCOPE)


def test_dbus_when_the_name_is_owned(auto, dbus_session) -> None:
    with closing(dbus_session.connect()) as conn:
        assert Proxy(message_bus, conn).RequestName(BUS_NAME)[0] == 1  # primary owner
        assert chosen()[0] == "dbus"


def test_dbus_when_the_name_is_activatable(auto, dbus_session) -> None:
    dbus_session.write_service_file(BUS_NAME, ["/bin/false"])
    assert chosen()[0] == "dbus"
    assert not dbus_session.name_has_owner(BUS_NAME)  # probing did not start it


def test_browser_when_no_broker_is_on_the_bus(auto, dbus_session, scripted_browser) -> None:
    name, reasons = chosen()
    assert name == "browser"
    assert BUS_NAME in reasons["dbus"]


def test_browser_when_there_is_no_session_bus(
    auto, scripted_browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    name, reasons = chosen()
    assert name == "browser"
    assert "dbus" in reasons


def test_nothing_usable_is_unavailable_with_every_reason(
    auto, cred_kwargs, dbus_session, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_browser(monkeypatch)
    credential = InteractiveBrowserBrokerCredential(**cred_kwargs)
    with pytest.raises(CredentialUnavailableError) as info:
        credential.get_token(STORAGE_SCOPE)
    assert "dbus:" in str(info.value) and "browser:" in str(info.value)


def _libraries_missing() -> None:
    raise OSError("libwebkit2gtk-4.1.so.0: cannot open shared object file: No such file")


def _no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROWSER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    monkeypatch.setenv("PATH", "/nonexistent")  # no xdg-open, no chromium, no firefox


def _fails_fast(credential, *, in_dac: bool = False) -> str:
    """get_token's error message; it must come within a couple of seconds."""
    expected = CredentialUnavailableError if in_dac else ClientAuthenticationError
    marker = within_dac.set(in_dac)
    started = time.monotonic()
    try:
        with pytest.raises(expected) as info:
            credential.get_token(STORAGE_SCOPE)
    finally:
        within_dac.reset(marker)
    assert time.monotonic() - started < 3
    assert isinstance(info.value, CredentialUnavailableError) is in_dac
    return str(info.value)


@pytest.mark.parametrize("in_dac", [False, True], ids=["alone", "in-dac"])
def test_forced_dbus_with_nothing_on_the_bus_fails_fast_with_the_fix(
    twin, cred_kwargs, dbus_session, scripted_browser, monkeypatch: pytest.MonkeyPatch,
    in_dac: bool,
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "dbus")
    message = _fails_fast(twin(**cred_kwargs), in_dac=in_dac)
    assert "AUTHBROKER_BACKEND=dbus" in message
    assert f"nothing owns or can activate {BUS_NAME}" in message
    assert "authbroker install-service" in message
    assert sign_ins(scripted_browser) == 0  # no browser opened in its place


def test_forced_native_without_its_libraries_fails_and_does_not_fall_back(
    twin, cred_kwargs, broker_daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "native")
    monkeypatch.setattr(native, "load_runtime", _libraries_missing)
    message = _fails_fast(twin(**cred_kwargs))
    assert "AUTHBROKER_BACKEND=native" in message
    assert "shared libraries" in message and "libwebkit2gtk-4.1.so.0" in message
    assert "install the system libraries" in message
    assert broker_daemon.sign_ins() == 0  # the daemon was there, and was not used
    assert broker_daemon.served_calls() == []


def test_forced_native_without_a_broker_says_install_service(
    twin, cred_kwargs, dbus_session, scripted_browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "native")
    message = _fails_fast(twin(**cred_kwargs))
    assert "AUTHBROKER_BACKEND=native" in message and "authbroker install-service" in message
    assert sign_ins(scripted_browser) == 0


def test_forced_native_not_installed_says_install_it(
    twin, cred_kwargs, broker_daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "native")
    monkeypatch.setitem(sys.modules, "pymsalruntime", None)  # an uninstalled package
    monkeypatch.setattr(native, "load_runtime", lambda: __import__("pymsalruntime"))
    message = _fails_fast(twin(**cred_kwargs))
    assert "pymsalruntime is not installed" in message and "pip install pymsalruntime" in message
    assert broker_daemon.sign_ins() == 0


def test_forced_browser_without_a_browser_says_set_browser(
    twin, cred_kwargs, broker_daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "browser")
    _no_browser(monkeypatch)
    message = _fails_fast(twin(**cred_kwargs))
    assert "AUTHBROKER_BACKEND=browser" in message and "set $BROWSER" in message
    assert broker_daemon.served_calls() == []  # the daemon on the bus was not used


def test_diagnose_lists_every_candidate_with_its_reason(
    auto, dbus_session, scripted_browser
) -> None:
    report = dict(diagnose("linux"))
    assert list(report) == ["dbus", "browser"]
    assert BUS_NAME in (report["dbus"] or "")
    assert report["browser"] is None


def test_native_probe_reports_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    monkeypatch.setattr(native, "load_runtime", _libraries_missing)
    assert "cannot load its shared libraries" in (native.unavailable_reason() or "")
    monkeypatch.setitem(sys.modules, "pymsalruntime", None)  # an uninstalled package
    monkeypatch.setattr(native, "load_runtime", lambda: __import__("pymsalruntime"))
    assert "not installed" in (native.unavailable_reason() or "")
