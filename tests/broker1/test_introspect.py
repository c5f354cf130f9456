"""Introspection is generated from the method table: exactly its rows, with their signatures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from authbroker import broker1
from authbroker.broker1.introspect import parent_node_xml


def test_introspection_lists_exactly_the_methods_rows_with_their_signatures():
    root = ET.fromstring(broker1.introspection_xml())
    ours = {spec.interface for spec in broker1.METHODS.values()}
    assert ours == {broker1.INTERFACE, broker1.EXTENSION_INTERFACE}
    listed = []
    for interface in root.findall("interface"):
        if interface.get("name") not in ours:
            continue
        for method in interface.findall("method"):
            ins = [a for a in method.findall("arg") if a.get("direction") == "in"]
            outs = [a for a in method.findall("arg") if a.get("direction") == "out"]
            assert [a.get("type") for a in outs] == ["s"] and outs[0].get("name") == "result"
            listed.append((method.get("name"), interface.get("name"),
                           "".join(a.get("type") for a in ins),
                           tuple(a.get("name") for a in ins)))
    assert listed == [(spec.method.value, spec.interface, spec.signature, spec.arg_names)
                      for spec in broker1.METHODS.values()]
    assert {spec.signature for spec in broker1.METHODS.values()
            if spec.interface == broker1.INTERFACE} == {"sss"}
    assert {spec.signature for spec in broker1.METHODS.values()
            if spec.interface == broker1.EXTENSION_INTERFACE} == {"ss"}


def test_every_method_has_one_row():
    assert set(broker1.METHODS) == set(broker1.Method) | set(broker1.UiMethod)
    names = [spec.method.value for spec in broker1.METHODS.values()]
    assert len(names) == len(set(names))


def test_the_standard_interfaces_and_the_prompt_signal_are_there():
    root = ET.fromstring(broker1.introspection_xml())
    names = [i.get("name") for i in root.findall("interface")]
    assert names == [broker1.INTERFACE, broker1.EXTENSION_INTERFACE, broker1.PEER_INTERFACE,
                     broker1.INTROSPECTABLE_INTERFACE]
    signal = root.find(f"interface[@name='{broker1.EXTENSION_INTERFACE}']/signal")
    assert signal is not None and signal.get("name") == broker1.DEVICE_CODE_SIGNAL
    assert [a.get("name") for a in signal.findall("arg")] == ["correlation_id", "prompt_json"]


def test_ancestors_of_the_object_path_introspect_as_nodes():
    assert parent_node_xml("/") == '<node>\n  <node name="com"/>\n</node>\n'
    assert parent_node_xml("/com/microsoft/identity") == \
        '<node>\n  <node name="broker1"/>\n</node>\n'
    assert parent_node_xml("/elsewhere") is None
