"""The Broker1 D-Bus façade on a private dbus-daemon, with a toy handler behind it.

Calls are made with raw jeepney messages so that malformed calls (wrong signatures, bad JSON)
can be sent exactly as a broken client would send them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from contextlib import closing

import pytest
from jeepney import (
    DBusAddress,
    DBusErrorResponse,
    HeaderFields,
    MatchRule,
    MessageType,
    new_method_call,
)
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

from authbroker import broker1, config
from authbroker.errors import NameTakenError
from fixtures.broker_toy import ACCOUNT, CRASH_SECRET, ServedToy, access_token_for, served_toy

BROKER = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME, interface=broker1.INTERFACE)
CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def auth(scopes: list[str], **extra: object) -> dict:
    return {"clientId": CLIENT_ID, "authority": "https://login.microsoftonline.com/organizations",
            "requestedScopes": scopes, "authorizationType": 1, "account": None,
            "isSignIn": True, **extra}


def raw_call(conn, member: str, body: tuple, signature: str = "sss", *,
             address: DBusAddress = BROKER, timeout: float = 10.0):
    msg = new_method_call(address, member, signature, body)
    return conn.send_and_get_reply(msg, timeout=timeout)


def broker_call(conn, method: broker1.Method, request: object, correlation_id: str = "corr-1",
                timeout: float = 10.0) -> dict:
    text = request if isinstance(request, str) else json.dumps(request)
    reply = raw_call(conn, method.value, ("0.0", correlation_id, text), timeout=timeout)
    assert reply.header.message_type is MessageType.method_return, reply.body
    assert reply.header.fields[8] == "s"  # HeaderFields.signature
    return json.loads(reply.body[0])


def assert_error_object(obj: dict, status: broker1.Status, *, token_method: bool) -> dict:
    holder = obj["brokerTokenResponse"] if token_method else obj
    err = holder["error"]
    for key in ("status", "errorCode", "tag", "subStatus"):
        assert isinstance(err[key], int) and not isinstance(err[key], bool), key
    assert isinstance(err["context"], str) and err["context"]
    assert err["status"] == int(status), err
    return err


@pytest.fixture
def toy(dbus_session):
    with served_toy(dbus_session.address) as served:
        yield served


@pytest.fixture
def conn(dbus_session):
    with closing(open_dbus_connection(dbus_session.address)) as c:
        yield c


def ping(conn) -> None:
    addr = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                       interface=broker1.PEER_INTERFACE)
    reply = raw_call(conn, "Ping", (), None, address=addr, timeout=5)
    assert reply.header.message_type is MessageType.method_return


def test_every_method_answers_with_the_right_shape(toy, conn):
    accounts = broker1.parse_response(broker1.Method.GET_ACCOUNTS, json.dumps(
        broker_call(conn, broker1.Method.GET_ACCOUNTS, {"clientId": CLIENT_ID,
                                                     "redirectUri": CLIENT_ID})))
    assert accounts.accounts == (ACCOUNT,)

    silent = broker_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                         {"authParameters": auth(["User.Read"], account=ACCOUNT.to_wire())})
    body = silent["brokerTokenResponse"]
    assert body["accessToken"] == access_token_for(("User.Read",))
    for key in ("accessTokenType", "clientInfo", "idToken", "expiresOn", "extendedExpiresOn"):
        assert key in body
    assert body["expiresOn"] > time.time() * 1000  # milliseconds on the wire

    interactive = broker_call(conn, broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, {
        "authParameters": auth(["User.Read"], authorizationType=6), "parentWindowHandle": 1})
    assert interactive["brokerTokenResponse"]["accessToken"]

    removed = broker_call(conn, broker1.Method.REMOVE_ACCOUNT,
                          {"clientId": CLIENT_ID, "account": ACCOUNT.to_wire()})
    assert removed == {"ok": True}
    assert broker_call(conn, broker1.Method.CANCEL_INTERACTIVE_FLOW,
                       broker1.CancelRequest().to_wire()) == {"ok": True}
    version = broker_call(conn, broker1.Method.GET_LINUX_BROKER_VERSION, {"clientId": CLIENT_ID})
    assert version == {"linuxBrokerVersion": broker1.BROKER_VERSION}
    signed = {"clientId": CLIENT_ID, "popParams": {"httpMethod": "GET", "uriHost": "h",
                                                   "uriPath": "/", "homeAccountId": "a.b"}}
    for method, request in ((broker1.Method.ACQUIRE_PRT_SSO_COOKIE, {}),
                            (broker1.Method.GENERATE_SIGNED_HTTP_REQUEST, signed)):
        assert_error_object(broker_call(conn, method, request), broker1.Status.UNEXPECTED,
                            token_method=False)  # the toy signs nothing
    # a generateSignedHttpRequest without popParams never reaches the handler
    assert_error_object(broker_call(conn, broker1.Method.GENERATE_SIGNED_HTTP_REQUEST, {}),
                        broker1.Status.API_CONTRACT_VIOLATION, token_method=False)

    methods = [m for m, _req, _ctx in toy.handler.calls]
    assert set(methods) == set(broker1.Method)
    ctx = toy.handler.calls[0][2]
    assert ctx.correlation_id == "corr-1"
    assert ctx.sender == conn.unique_name
    assert ctx.uid == os.getuid()


def test_ping_machine_id_and_introspection(toy, conn):
    ping(conn)
    peer = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                       interface=broker1.PEER_INTERFACE)
    machine = raw_call(conn, "GetMachineId", (), None, address=peer)
    assert machine.header.message_type is MessageType.method_return
    assert isinstance(machine.body[0], str)

    intro = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                        interface=broker1.INTROSPECTABLE_INTERFACE)
    xml = raw_call(conn, "Introspect", (), None, address=intro).body[0]
    root = ET.fromstring(xml)
    broker = root.find(f"interface[@name='{broker1.INTERFACE}']")
    assert broker is not None
    found = {m.get("name"): m for m in broker.findall("method")}
    assert set(found) == {m.value for m in broker1.Method}
    for method in found.values():
        args = [(a.get("name"), a.get("type"), a.get("direction")) for a in method.findall("arg")]
        assert args == [("protocol_version", "s", "in"), ("correlation_id", "s", "in"),
                        ("request_json", "s", "in"), ("result", "s", "out")]
    signal = root.find(f"interface[@name='{broker1.EXTENSION_INTERFACE}']/signal")
    assert signal is not None and signal.get("name") == broker1.DEVICE_CODE_SIGNAL
    ui = root.findall(f"interface[@name='{broker1.EXTENSION_INTERFACE}']/method")
    assert {m.get("name") for m in ui} == {broker1.SET_DEFAULT_ACCOUNT, broker1.GET_DEFAULT_ACCOUNT,
                                           broker1.GET_STATUS, broker1.REGISTER_DEVICE,
                                           broker1.GET_DEVICE_STATUS, broker1.UNREGISTER_DEVICE}
    for method in ui:
        args = [(a.get("name"), a.get("type"), a.get("direction")) for a in method.findall("arg")]
        assert args == [("correlation_id", "s", "in"), ("request_json", "s", "in"),
                        ("result", "s", "out")]
    assert root.find(f"interface[@name='{broker1.PEER_INTERFACE}']") is not None

    # bus browsers can walk down to the object
    top = ET.fromstring(raw_call(conn, "Introspect", (), None, address=DBusAddress(
        "/", bus_name=broker1.BUS_NAME, interface=broker1.INTROSPECTABLE_INTERFACE)).body[0])
    assert [n.get("name") for n in top.findall("node")] == ["com"]


BAD_REQUESTS = [
    pytest.param("{not json", id="malformed-json"),
    pytest.param("[1, 2]", id="not-an-object"),
    pytest.param(json.dumps({"authParameters": {"clientId": 42, "requestedScopes": ["a"]}}),
                 id="wrong-type"),
    pytest.param(json.dumps({"authParameters": {"requestedScopes": ["a"]}}), id="missing-field"),
    pytest.param(json.dumps({"authParameters": "yes"}), id="wrong-container"),
    pytest.param(json.dumps({"authParameters": auth(["a" * (broker1.MAX_REQUEST_BYTES + 1)])}),
                 id="oversized"),
    pytest.param("[" * 100_000, id="deeply-nested"),
]


@pytest.mark.parametrize("request_json", BAD_REQUESTS)
def test_bad_requests_get_error_objects_and_the_daemon_stays_up(toy, conn, request_json):
    for method in (broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                   broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY):
        reply = broker_call(conn, method, request_json)
        err = assert_error_object(reply, broker1.Status.API_CONTRACT_VIOLATION, token_method=True)
        assert method.value in err["context"]
    reply = broker_call(conn, broker1.Method.REMOVE_ACCOUNT, request_json)
    assert_error_object(reply, broker1.Status.API_CONTRACT_VIOLATION, token_method=False)
    assert toy.handler.calls == []  # nothing malformed reaches the core
    ping(conn)
    assert broker_call(conn, broker1.Method.GET_ACCOUNTS, {"clientId": CLIENT_ID})["accounts"]


def test_wrong_dbus_signature_still_gets_a_json_error(toy, conn):
    short = raw_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY.value, ("0.0", "corr-sig"), "ss")
    assert short.header.message_type is MessageType.method_return
    err = assert_error_object(json.loads(short.body[0]), broker1.Status.API_CONTRACT_VIOLATION,
                              token_method=True)
    assert "signature" in err["context"]
    ints = raw_call(conn, broker1.Method.GET_ACCOUNTS.value, (1, 2), "ii")
    assert_error_object(json.loads(ints.body[0]), broker1.Status.API_CONTRACT_VIOLATION,
                        token_method=False)
    empty = raw_call(conn, broker1.Method.GET_ACCOUNTS.value, (), None)
    assert_error_object(json.loads(empty.body[0]), broker1.Status.API_CONTRACT_VIOLATION,
                        token_method=False)
    ui = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                     interface=broker1.EXTENSION_INTERFACE)
    three = raw_call(conn, broker1.SET_DEFAULT_ACCOUNT, ("0.0", "c", "{}"), address=ui)
    err = assert_error_object(json.loads(three.body[0]), broker1.Status.API_CONTRACT_VIOLATION,
                              token_method=False)
    assert "two strings" in err["context"]
    nobody = raw_call(conn, broker1.SET_DEFAULT_ACCOUNT, ("c", "{}"), "ss", address=ui)
    err = assert_error_object(json.loads(nobody.body[0]), broker1.Status.API_CONTRACT_VIOLATION,
                              token_method=False)
    assert "homeAccountId" in err["context"]
    assert toy.handler.calls == []
    # not a Broker1 method: a D-Bus error is all we can say
    unknown = raw_call(conn, "stealTokens", ("0.0", "c", "{}"))
    assert unknown.header.message_type is MessageType.error
    assert unknown.header.fields[4] == "org.freedesktop.DBus.Error.UnknownMethod"
    wrong_path = raw_call(conn, "getAccounts", ("0.0", "c", "{}"), address=DBusAddress(
        "/elsewhere", bus_name=broker1.BUS_NAME, interface=broker1.INTERFACE))
    assert wrong_path.header.message_type is MessageType.error
    ping(conn)


def test_a_foreign_uid_is_refused(dbus_session, conn):
    with served_toy(dbus_session.address, expected_uid=os.getuid() + 1) as toy:
        reply = broker_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                            {"authParameters": auth(["User.Read"])})
        err = assert_error_object(reply, broker1.Status.INCORRECT_CONFIGURATION, token_method=True)
        assert f"uid {os.getuid()}" in err["context"]
        assert "accessToken" not in reply["brokerTokenResponse"]
        reply = broker_call(conn, broker1.Method.GET_ACCOUNTS, {"clientId": CLIENT_ID})
        assert_error_object(reply, broker1.Status.INCORRECT_CONFIGURATION, token_method=False)
        assert "accounts" not in reply
        # our own interface's methods are checked the same way
        ui = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                         interface=broker1.EXTENSION_INTERFACE)
        set_default = raw_call(conn, broker1.SET_DEFAULT_ACCOUNT,
                               ("corr-ui", json.dumps({"username": "toy@contoso.example"})),
                               "ss", address=ui)
        reply = json.loads(set_default.body[0])
        err = assert_error_object(reply, broker1.Status.INCORRECT_CONFIGURATION, token_method=False)
        assert f"uid {os.getuid()}" in err["context"] and "ok" not in reply
        assert toy.handler.calls == []


def test_a_slow_call_does_not_block_other_callers(toy, dbus_session):
    with closing(open_dbus_connection(dbus_session.address)) as slow_conn, \
            closing(open_dbus_connection(dbus_session.address)) as fast_conn:
        slow_msg = new_method_call(BROKER, broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY.value, "sss",
                                   (
            "0.0", "slow", json.dumps({"authParameters": auth(["slow:2.5"])})))
        started = time.monotonic()
        result: dict = {}

        def slow() -> None:
            result["reply"] = slow_conn.send_and_get_reply(slow_msg, timeout=10)
            result["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.2)  # the slow call is running in the daemon now
        fast_started = time.monotonic()
        for _ in range(5):
            assert broker_call(fast_conn, broker1.Method.GET_ACCOUNTS, {"clientId": CLIENT_ID},
                               timeout=2)["accounts"]
            broker_call(fast_conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                        {"authParameters": auth(["User.Read"])}, timeout=2)
        fast_elapsed = time.monotonic() - fast_started
        assert "reply" not in result  # the slow one is still running ...
        assert fast_elapsed < 1.0  # ... and did not hold the others up
        thread.join(10)
        assert result["elapsed"] >= 2.5
        body = json.loads(result["reply"].body[0])["brokerTokenResponse"]
        assert body["accessToken"] == access_token_for(("slow:2.5",))


def test_an_unexpected_exception_is_answered_and_logged_without_its_message(
        toy, conn, caplog):
    caplog.set_level(logging.INFO, logger="authbroker")
    reply = broker_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                        {"authParameters": auth(["crash"])}, correlation_id="corr-crash")
    err = assert_error_object(reply, broker1.Status.UNEXPECTED, token_method=True)
    assert CRASH_SECRET not in json.dumps(reply)
    assert "RuntimeError" in err["context"]
    assert CRASH_SECRET not in caplog.text
    assert "RuntimeError" in caplog.text and "corr-crash" in caplog.text
    ping(conn)
    assert broker_call(conn, broker1.Method.GET_ACCOUNTS, {})["accounts"]


def test_calls_are_logged_without_bodies(toy, conn, caplog):
    caplog.set_level(logging.DEBUG, logger="authbroker")
    broker_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY,
                {"authParameters": auth(["https://marker.example/Body.Scope"])},
                correlation_id="corr-log\nforged line")
    broker_call(conn, broker1.Method.ACQUIRE_TOKEN_SILENTLY, {"authParameters": auth(["needs-ui"])},
                correlation_id="corr-ui")
    lines = [r.getMessage() for r in caplog.records if r.name == config.ACCESS_LOGGER]
    ok = [line for line in lines if "corr-log" in line]
    assert len(ok) == 1 and "acquireTokenSilently" in ok[0] and " ok " in ok[0]
    assert "\n" not in ok[0]  # a caller cannot forge log lines through the correlation id
    assert toy.handler.calls[0][2].correlation_id == "corr-log?forged?line"  # nor in the core's
    assert any("corr-ui" in line and "status 2" in line for line in lines)
    # answered silent calls are the hot path (DEBUG); a failure is worth INFO
    levels = {r.getMessage().split()[1]: r.levelno for r in caplog.records
              if r.name == config.ACCESS_LOGGER and "correlation=corr-" in r.getMessage()}
    assert levels["correlation=corr-log?forged?line"] == logging.DEBUG
    assert levels["correlation=corr-ui"] == logging.INFO
    assert "marker.example" not in caplog.text
    assert access_token_for(("https://marker.example/Body.Scope",)) not in caplog.text


def test_device_code_prompt_goes_to_the_caller_only(toy, dbus_session):
    rule = MatchRule(type="signal", interface=broker1.EXTENSION_INTERFACE,
                     member=broker1.DEVICE_CODE_SIGNAL)
    with closing(open_dbus_connection(dbus_session.address)) as caller, \
            closing(open_dbus_connection(dbus_session.address)) as bystander:
        for c in (caller, bystander):
            Proxy(message_bus, c).AddMatch(rule)
        with caller.filter(rule, queue=deque()) as caller_q, \
                bystander.filter(rule, queue=deque()) as bystander_q:
            reply = broker_call(caller, broker1.Method.ACQUIRE_TOKEN_INTERACTIVELY, {
                "authParameters": auth(["User.Read"], authorizationType=6)},
                correlation_id="corr-dc")
            assert reply["brokerTokenResponse"]["accessToken"]
            assert len(caller_q) == 1
            signal = caller_q.popleft()
            correlation_id, prompt_json = signal.body
            assert correlation_id == "corr-dc"
            assert json.loads(prompt_json)["userCode"] == "TOYCODE1"
            # an unrelated client listening for the same signal sees nothing
            with pytest.raises(TimeoutError):
                bystander.recv_until_filtered(bystander_q, timeout=0.3)


def test_the_name_cannot_be_taken_twice(toy, dbus_session):
    second = ServedToy(dbus_session.address)
    with pytest.raises(NameTakenError, match=broker1.BUS_NAME):
        second.__enter__()
    second.thread.join(5)
    with closing(open_dbus_connection(dbus_session.address)) as c:
        ping(c)  # the first one is unaffected


def test_not_serving_after_stop(dbus_session):
    with served_toy(dbus_session.address) as toy:
        assert dbus_session.name_has_owner(broker1.BUS_NAME)
    assert toy.handler.closed is False  # the service does not close the handler it was given
    assert not dbus_session.name_has_owner(broker1.BUS_NAME)
    with closing(open_dbus_connection(dbus_session.address)) as c, \
            pytest.raises(DBusErrorResponse):
        Proxy(message_bus, c).GetNameOwner(broker1.BUS_NAME)


def test_a_call_running_at_shutdown_is_still_answered(dbus_session):
    with closing(open_dbus_connection(dbus_session.address)) as c:
        served = ServedToy(dbus_session.address)
        with served:
            msg = new_method_call(BROKER, broker1.Method.ACQUIRE_TOKEN_SILENTLY.value, "sss", (
                "0.0", "corr-late", json.dumps({"authParameters": auth(["slow:30"])})))
            serial = next(c.outgoing_serial)
            c.send(msg, serial=serial)
            time.sleep(0.3)
            started = time.monotonic()
        # leaving the block stopped the service: the slow call was answered, not dropped
        assert time.monotonic() - started < 6
        while True:
            reply = c.receive(timeout=5)
            if reply.header.fields.get(5) == serial:  # HeaderFields.reply_serial
                break
        assert reply.header.message_type is MessageType.method_return
        err = assert_error_object(json.loads(reply.body[0]), broker1.Status.TRANSIENT_ERROR,
                                  token_method=True)
        assert "shutting down" in err["context"]


@pytest.mark.parametrize("request_json", ["", "   ", "[]", "null", '"cancel"', "7"])
def test_a_cancel_that_is_not_a_json_object_gets_an_error_object(toy, conn, request_json):
    reply = broker_call(conn, broker1.Method.CANCEL_INTERACTIVE_FLOW, request_json)
    err = assert_error_object(reply, broker1.Status.API_CONTRACT_VIOLATION, token_method=False)
    assert "JSON object" in err["context"] and "ok" not in reply
    assert toy.handler.calls == []  # nothing was cancelled


def test_get_status_is_refused_to_a_foreign_uid(dbus_session, conn):
    with served_toy(dbus_session.address, expected_uid=os.getuid() + 1) as toy:
        ui = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                         interface=broker1.EXTENSION_INTERFACE)
        reply = json.loads(raw_call(conn, broker1.GET_STATUS, ("corr-st", "{}"), "ss",
                                    address=ui).body[0])
        err = assert_error_object(reply, broker1.Status.INCORRECT_CONFIGURATION, token_method=False)
        assert f"uid {os.getuid()}" in err["context"] and "signIns" not in reply
        assert toy.handler.calls == []


def test_a_burst_of_calls_waits_its_turn_instead_of_being_refused(toy, conn):
    """120 silent calls sent at once (each takes 50 ms in the handler, so well over the 64 the
    daemon serves at a time are pending together): every one gets its token, none is "busy".
    (120: dbus-daemon's default limit is 128 pending replies per connection.)"""
    from authbroker.daemon.service import MAX_CALLS_IN_FLIGHT

    count = 120
    assert count > MAX_CALLS_IN_FLIGHT
    serials = []
    for n in range(count):
        msg = new_method_call(BROKER, broker1.Method.ACQUIRE_TOKEN_SILENTLY.value, "sss", (
            "0.0", f"burst-{n}", json.dumps({"authParameters": auth(["slow:0.05"])})))
        serial = next(conn.outgoing_serial)
        conn.send(msg, serial=serial)
        serials.append(serial)
    replies = {}
    deadline = time.monotonic() + 20
    while len(replies) < count and time.monotonic() < deadline:
        incoming = conn.receive(timeout=max(0.1, deadline - time.monotonic()))
        reply_to = incoming.header.fields.get(HeaderFields.reply_serial)
        if reply_to in serials:
            assert incoming.header.message_type is MessageType.method_return, incoming.body
            replies[reply_to] = json.loads(incoming.body[0])["brokerTokenResponse"]
    assert len(replies) == count
    refused = [r for r in replies.values() if "error" in r]
    assert refused == []
    assert {r["accessToken"] for r in replies.values()} == {access_token_for(("slow:0.05",))}
