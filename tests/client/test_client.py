"""BrokerClient and AsyncBrokerClient against the real D-Bus façade (toy handler), private bus."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from authbroker import broker1
from authbroker.broker1 import DeviceCodePrompt
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.errors import BrokerStatusError, BrokerUnavailableError
from fixtures.broker_toy import ACCOUNT, CLIENT_INFO, access_token_for, served_toy
from fixtures.daemon import DaemonProcess

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def auth(*scopes: str, account: broker1.Account | None = None) -> broker1.AuthParameters:
    return broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=scopes, account=account)


@pytest.fixture
def toy(dbus_session):
    with served_toy(dbus_session.address) as served:
        yield served


def test_blocking_client_every_method(toy):
    with BrokerClient(timeout=10) as client:
        assert client.ping() < 1.0
        assert client.is_available()
        assert client.get_accounts(CLIENT_ID) == [ACCOUNT]
        token = client.acquire_token_silently(auth("User.Read", account=ACCOUNT))
        assert token.access_token == access_token_for(("User.Read",))
        assert token.client_info == CLIENT_INFO
        assert token.account == ACCOUNT
        assert token.expires_on > time.time() + 3000  # seconds again after the ms wire format
        assert "toy-at" not in repr(token)
        prompts: list[DeviceCodePrompt] = []
        token = client.acquire_token_interactively(auth("User.Read"), on_device_code=prompts.append)
        assert token.access_token and [p.user_code for p in prompts] == ["TOYCODE1"]
        client.remove_account(ACCOUNT, CLIENT_ID)
        client.cancel_interactive_flow()
        assert client.get_linux_broker_version(CLIENT_ID) == broker1.BROKER_VERSION
    sent = {m: req for m, req, _ctx in toy.handler.calls}
    silent = sent[broker1.Method.ACQUIRE_TOKEN_SILENTLY]
    interactive = sent[broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY]
    assert silent.auth.authorization_type == broker1.AuthorizationType.CACHED_REFRESH_TOKEN
    assert silent.auth.account == ACCOUNT
    assert interactive.auth.authorization_type == broker1.AuthorizationType.INTERACTIVE
    assert interactive.parent_window_handle == 1 and interactive.auth.is_sign_in
    assert sent[broker1.Method.REMOVE_ACCOUNT].account == ACCOUNT
    # every call carries its own correlation id
    ids = [ctx.correlation_id for _m, _r, ctx in toy.handler.calls]
    assert len(set(ids)) == len(ids)


def test_error_objects_are_raised_as_broker_errors(toy):
    with BrokerClient(timeout=10) as client:
        with pytest.raises(BrokerStatusError) as info:
            client.acquire_token_silently(auth("needs-ui"))
        assert info.value.status == broker1.Status.INTERACTION_REQUIRED
        assert info.value.error_code == 50076
        assert "sign in first" in info.value.context
        with pytest.raises(BrokerStatusError) as info:
            client.acquire_token_silently(auth("crash"))
        assert info.value.status == broker1.Status.UNEXPECTED
        assert client.get_accounts(CLIENT_ID)  # the connection is still good


def test_default_device_code_prompt_goes_to_stderr(toy, capfd):
    with BrokerClient(timeout=10) as client:
        client.acquire_token_interactively(auth("User.Read"))
    out, err = capfd.readouterr()
    assert out == ""
    assert "https://127.0.0.1/devicelogin" in err and "TOYCODE1" in err


def test_no_broker_is_unavailable(dbus_session):
    with BrokerClient(timeout=5) as client:
        assert not client.is_available()
        with pytest.raises(BrokerUnavailableError, match="ServiceUnknown"):
            client.get_accounts(CLIENT_ID)
        with pytest.raises(BrokerUnavailableError):
            client.ping()


def test_activatable_counts_as_available(dbus_session):
    dbus_session.write_service_file(broker1.BUS_NAME, ["/bin/false"])
    with BrokerClient(timeout=5) as client:
        assert client.is_available()
        with pytest.raises(BrokerUnavailableError, match="Spawn"):
            client.ping()


def test_no_bus_is_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    with BrokerClient(timeout=2) as client:
        assert not client.is_available()
        with pytest.raises(BrokerUnavailableError, match="session bus") as info:
            client.get_accounts(CLIENT_ID)
        assert info.value.hint
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    with BrokerClient(timeout=2) as client, pytest.raises(BrokerUnavailableError):
        client.ping()


def test_timeout_raises_and_the_client_recovers(toy):
    with BrokerClient(timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError, match="within 0.5 s"):
            client.acquire_token_silently(auth("slow:1.5"))
        assert time.monotonic() - started < 1.2
        client.timeout = 10
        time.sleep(1.2)  # the late reply arrives on the old (closed) connection, not this one
        token = client.acquire_token_silently(auth("User.Read"))
        assert token.access_token == access_token_for(("User.Read",))


def test_async_client_every_method(toy):
    async def main() -> list[DeviceCodePrompt]:
        prompts: list[DeviceCodePrompt] = []

        async def show(prompt: DeviceCodePrompt) -> None:
            await asyncio.sleep(0.05)
            prompts.append(prompt)

        async with AsyncBrokerClient(timeout=10) as client:
            assert await client.ping() < 1.0
            assert await client.is_available()
            assert await client.get_accounts(CLIENT_ID) == [ACCOUNT]
            token = await client.acquire_token_silently(auth("User.Read", account=ACCOUNT))
            assert token.access_token == access_token_for(("User.Read",))
            token = await client.acquire_token_interactively(auth("User.Read"),
                                                             on_device_code=show)
            assert token.account == ACCOUNT
            assert [p.user_code for p in prompts] == ["TOYCODE1"]  # shown before returning
            await client.remove_account(ACCOUNT, CLIENT_ID)
            await client.cancel_interactive_flow()
            assert await client.get_linux_broker_version() == broker1.BROKER_VERSION
            with pytest.raises(BrokerStatusError) as info:
                await client.acquire_token_silently(auth("needs-ui"))
            assert info.value.status == broker1.Status.INTERACTION_REQUIRED
        return prompts

    assert len(asyncio.run(main())) == 1
    assert {m for m, _r, _c in toy.handler.calls} == {
        broker1.Method.GET_ACCOUNTS, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
        broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, broker1.Method.REMOVE_ACCOUNT,
        broker1.Method.CANCEL_INTERACTIVE_FLOW, broker1.Method.GET_LINUX_BROKER_VERSION}


def test_async_client_runs_calls_concurrently(toy):
    async def main() -> tuple[float, float]:
        async with AsyncBrokerClient(timeout=10) as client:
            started = time.monotonic()
            slow = asyncio.create_task(client.acquire_token_silently(auth("slow:1.5")))
            await client.get_accounts(CLIENT_ID)
            fast_done = time.monotonic() - started
            assert not slow.done()
            await slow
            return fast_done, time.monotonic() - started

    fast, slow = asyncio.run(main())
    assert fast < 0.5 <= 1.5 <= slow


def bus_peers(bus) -> int:
    """How many connections the bus has (the one asking included)."""
    return sum(name.startswith(":") for name in bus.call_bus("ListNames")[0])


def test_async_client_connection_ends_with_its_event_loop(toy, dbus_session):
    """asyncio.run() twice with one client: each loop's connection is closed as that loop
    ends (not left open for the garbage collector), and the next loop opens its own."""
    baseline = bus_peers(dbus_session)
    client = AsyncBrokerClient(timeout=10)
    for _ in range(2):
        assert asyncio.run(client.get_accounts(CLIENT_ID)) == [ACCOUNT]
        deadline = time.monotonic() + 5
        while bus_peers(dbus_session) != baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bus_peers(dbus_session) == baseline
    asyncio.run(client.aclose())


def test_async_client_concurrent_first_calls_share_one_connection(toy, dbus_session):
    baseline = bus_peers(dbus_session)

    async def main() -> int:
        async with AsyncBrokerClient(timeout=10) as client:
            await asyncio.gather(*(client.get_accounts(CLIENT_ID) for _ in range(3)))
            return bus_peers(dbus_session)

    assert asyncio.run(main()) == baseline + 1


def test_async_client_unavailable(dbus_session, monkeypatch, tmp_path):
    async def main() -> None:
        async with AsyncBrokerClient(timeout=5) as client:
            assert not await client.is_available()
            with pytest.raises(BrokerUnavailableError):
                await client.get_accounts(CLIENT_ID)
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/nothing")
        async with AsyncBrokerClient(timeout=2) as client:
            with pytest.raises(BrokerUnavailableError, match="session bus"):
                await client.ping()

    asyncio.run(main())


def test_blocking_client_needs_no_event_loop(toy):
    # usable from inside a running event loop's thread too (e.g. a sync callback in async code)
    async def main() -> str:
        with BrokerClient(timeout=10) as client:
            return client.get_linux_broker_version()

    assert asyncio.run(main()) == broker1.BROKER_VERSION


# -- against the real daemon (device-code sign-in that nobody approves) --------------------------

SCOPE = "https://storage.azure.com/.default"


@pytest.fixture
def real_broker(dbus_session, authority, tmp_path, request):
    env = dict(dbus_session.env, AUTHBROKER_AUTHORITY=authority.authority,
               REQUESTS_CA_BUNDLE=authority.ca_bundle, CURL_CA_BUNDLE=authority.ca_bundle,
               AUTHBROKER_UI="device-code", XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    failed = request.session.testsfailed
    with DaemonProcess(dbus_session, env, tmp_path, store=tmp_path / "store.enc") as daemon:
        yield daemon
    if request.session.testsfailed > failed:  # shown under "Captured stdout teardown"
        print(f"--- the daemon's log (tail) ---\n{daemon.log_text()[-3000:]}")


def test_another_client_cancels_a_sign_in_by_its_correlation_id(real_broker):
    cid = str(uuid.uuid4())
    prompts: list[DeviceCodePrompt] = []
    outcome: dict[str, BaseException] = {}

    def sign_in() -> None:
        with BrokerClient(timeout=60) as client:
            try:
                client.acquire_token_interactively(auth(SCOPE), on_device_code=prompts.append,
                                                   correlation_id=cid)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

    thread = threading.Thread(target=sign_in)
    thread.start()
    deadline = time.monotonic() + 30
    while not prompts and time.monotonic() < deadline:
        time.sleep(0.05)
    assert prompts and prompts[0].user_code in prompts[0].message  # the real prompt arrived
    with BrokerClient(timeout=10) as other:
        other.cancel_interactive_flow()  # someone else's cancel: not ours to end
        thread.join(1.0)
        assert thread.is_alive()
        other.cancel_interactive_flow(correlation_id=cid)
    thread.join(15)
    assert not thread.is_alive()
    error = outcome["error"]
    assert isinstance(error, BrokerStatusError) and error.status == broker1.Status.USER_CANCELED


def test_async_client_cancels_its_own_sign_in(real_broker):
    async def main() -> BrokerStatusError:
        async with AsyncBrokerClient(timeout=60) as client:
            shown = asyncio.Event()
            sign_in = asyncio.create_task(client.acquire_token_interactively(
                auth(SCOPE), on_device_code=lambda _prompt: shown.set()))
            await asyncio.wait_for(shown.wait(), 30)
            await client.cancel_interactive_flow()  # same connection: cancels it
            with pytest.raises(BrokerStatusError) as info:
                await asyncio.wait_for(sign_in, 15)
            return info.value

    assert asyncio.run(main()).status == broker1.Status.USER_CANCELED
