"""Broker1Messages without a bus: each method's call goes to its interface with its signature."""

from __future__ import annotations

import json

import pytest
from jeepney import HeaderFields

from authbroker import broker1
from authbroker.client import Broker1Messages


@pytest.mark.parametrize("method", list(broker1.METHODS))
def test_calls_follow_the_method_table(method):
    spec = broker1.METHODS[method]
    cid, msg = Broker1Messages().call(method, broker1.OpaqueRequest({"k": "v"}), "corr-7")
    fields = msg.header.fields
    assert cid == "corr-7"
    assert fields[HeaderFields.interface] == spec.interface
    assert fields[HeaderFields.member] == method.value
    assert fields[HeaderFields.signature] == spec.signature
    assert fields[HeaderFields.path] == broker1.OBJECT_PATH
    assert fields[HeaderFields.destination] == broker1.BUS_NAME
    expected = {"sss": (broker1.PROTOCOL_VERSION, "corr-7", '{"k":"v"}'),
                "ss": ("corr-7", '{"k":"v"}')}[spec.signature]
    assert msg.body == expected


def test_naming_no_account_for_the_default_is_a_value_error():
    with pytest.raises(ValueError):
        Broker1Messages.default_request()
    with pytest.raises(ValueError):
        Broker1Messages.default_request("oid.tid", "user@contoso.example")


def test_signed_http_request_names_the_account() -> None:
    pop = broker1.PopParams("GET", "h", "/p", nonce="n")
    request = Broker1Messages.signed_http_request("c", pop, "oid.tid")
    assert request.pop_params.home_account_id == "oid.tid"
    assert Broker1Messages.signed_http_request(
        "c", broker1.PopParams("GET", "h", "/p", home_account_id="a.b")).pop_params == \
        broker1.PopParams("GET", "h", "/p", home_account_id="a.b")
    with pytest.raises(ValueError):
        Broker1Messages.signed_http_request("c", pop)
    _cid, message = Broker1Messages().call(broker1.Method.GENERATE_SIGNED_HTTP_REQUEST, request)
    assert message.header.fields[HeaderFields.member] == "generateSignedHttpRequest"
    sent = json.loads(message.body[2])
    assert sent == {"clientId": "c", "popParams": request.pop_params.to_wire()}
