"""Interactive sign-ins through the broker: the browser flow's parameters, the device-code flow
(to the caller and the desktop), cancel and timeout."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt
from authbroker.config import Settings
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.handler import CallContext
from authbroker.devkit.useragent import device_login
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import (
    PASSWORD,
    PERSONAL,
    SECOND,
    USER,
    auth,
    ctx,
    interactive,
    make_core,
    person,
)
from fixtures.desktop_notifications import NotificationServer


def test_device_code_flow_reaches_the_caller_and_signs_in(authority) -> None:
    prompts: list[DeviceCodePrompt] = []

    async def announce(prompt: DeviceCodePrompt) -> None:
        prompts.append(prompt)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(
            None, device_login, prompt.verification_uri, prompt.user_code, SECOND, PASSWORD
        )

    async def scenario() -> None:
        core = make_core(authority.authority, None, ui="device-code")
        request = broker1.TokenRequest(auth(interactive=True), parent_window_handle=1)
        result = await core.handle(
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, ctx(announce_device_code=announce)
        )
        assert isinstance(result, broker1.TokenResult)
        assert result.account and result.account.username == SECOND
        assert len(prompts) == 1 and prompts[0].user_code in prompts[0].message
        assert prompts[0].verification_uri.startswith(authority.authority)
        await core.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["browser", "device-code"])
def test_cancel_interactive_flow_ends_sign_in_with_user_canceled(authority, mode: str) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, ui=mode)
        task = asyncio.ensure_future(interactive(core))
        await asyncio.sleep(1.0)
        assert not task.done()
        # another app's (late) cancel leaves this sign-in alone
        stranger = CallContext(correlation_id="late", sender=":1.99", uid=0)
        await core.handle(broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest(), stranger)
        await asyncio.sleep(0.3)
        assert not task.done()
        started = time.monotonic()
        reply = await core.handle(
            broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.CancelRequest("user closed it"),
            ctx("x"),
        )
        assert isinstance(reply, broker1.OkResult)
        with pytest.raises(BrokerStatusError) as err:
            await task
        assert err.value.status == broker1.Status.USER_CANCELED
        assert time.monotonic() - started < 2
        await core.aclose()

    asyncio.run(scenario())


def test_sign_in_times_out_with_an_error(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, timeout=1.5)
        started = time.monotonic()
        with pytest.raises(BrokerStatusError) as err:
            await interactive(core)
        assert time.monotonic() - started < 5
        assert err.value.status not in (7, 12, 23)
        assert "did not finish" in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_without_a_browser_the_device_code_prompt_reaches_caller_and_desktop(
    authority, dbus_session, monkeypatch
) -> None:
    for var in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    prompts: list[DeviceCodePrompt] = []

    async def announce(prompt: DeviceCodePrompt) -> None:
        prompts.append(prompt)
        asyncio.get_running_loop().run_in_executor(
            None, device_login, prompt.verification_uri, prompt.user_code, USER, PASSWORD
        )

    async def scenario() -> None:
        core = BrokerCore(None, Settings(authority=authority.authority, ui=None, backend=None),
                          open_url=person())  # never used: no browser can open
        request = broker1.TokenRequest(auth(interactive=True), parent_window_handle=1)
        result = await core.handle(
            broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, request, ctx(announce_device_code=announce)
        )
        assert isinstance(result, broker1.TokenResult)
        assert result.account and result.account.username == USER
        await core.aclose()

    with NotificationServer(dbus_session.address) as notifications:
        asyncio.run(scenario())
    assert len(prompts) == 1
    [(summary, body)] = notifications.shown
    assert summary == "Sign-in required"
    assert prompts[0].user_code in body


def test_hint_prompt_claims_and_passthrough_travel_to_the_authority(authority) -> None:
    from urllib.parse import parse_qs, urlsplit

    seen: list[str] = []
    personal = person(PERSONAL)

    def open_url(url: str) -> bool:
        seen.append(url)
        return personal(url)

    challenge = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})

    async def scenario() -> broker1.TokenResult:
        core = make_core(authority.authority, None, open_url)
        token = await interactive(
            core, username=PERSONAL, prompt="login", decoded_claims=challenge,
            extra_query={"msal_client_sku": "MSAL.Python",
                         "msal_request_type": "consumer_passthrough"},
        )
        await core.aclose()
        return token

    token = asyncio.run(scenario())
    assert token.account and token.account.username == PERSONAL
    query = parse_qs(urlsplit(seen[0]).query)
    assert query["login_hint"] == [PERSONAL]
    assert query["prompt"] == ["login"]
    assert json.loads(query["claims"][0]) == json.loads(challenge)
    assert query["msal_request_type"] == ["consumer_passthrough"]
    assert query["response_mode"] == ["form_post"]
    assert "msal_client_sku" not in query  # client telemetry stays with the client


@pytest.mark.parametrize("opener", ["open_browser", "webbrowser.open"])
def test_concurrent_sign_ins_all_find_the_browser(monkeypatch, tmp_path, opener):
    """webbrowser fills its browser list in place on first use; two sign-ins starting at once
    must both find $BROWSER (the unguarded webbrowser.open is the control: it loses one)."""
    import threading
    import webbrowser

    from authbroker.daemon import signin

    monkeypatch.setenv("BROWSER", "true %s")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "TERM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    monkeypatch.setattr(webbrowser, "_os_preferred_browser", None)
    slow_register = webbrowser.register

    def register(*args, **kwargs):  # widen the window in which the list is still empty
        time.sleep(0.2)
        return slow_register(*args, **kwargs)

    monkeypatch.setattr(webbrowser, "register", register)
    open_url = signin.open_browser if opener == "open_browser" else webbrowser.open
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(open_url("https://x.example/")))
               for _ in range(4)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(5)
    if opener == "open_browser":
        assert results == [True] * 4
    else:
        assert False in results  # the race is real: without the guard a sign-in finds no browser
