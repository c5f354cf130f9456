"""Broker1Messages without a bus: each method's call goes to its interface with its signature."""

from __future__ import annotations

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
