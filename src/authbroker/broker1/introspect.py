"""The introspection XML of the broker object, generated from the method table (``METHODS``).

Besides the rows of ``METHODS``, the object has our device-code signal and the standard Peer
and Introspectable interfaces; ancestors of the object path introspect as bare nodes so that
bus browsers can walk down to it.
"""

from __future__ import annotations

import html

from authbroker.broker1.methods import METHODS, RESULT_ARG, MethodSpec
from authbroker.broker1.names import (
    DEVICE_CODE_SIGNAL,
    EXTENSION_INTERFACE,
    INTROSPECTABLE_INTERFACE,
    OBJECT_PATH,
    PEER_INTERFACE,
)

_DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)
#: Signals by interface: (name, argument names), every argument a string.
SIGNALS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    EXTENSION_INTERFACE: ((DEVICE_CODE_SIGNAL, ("correlation_id", "prompt_json")),),
}
_STANDARD = (
    "  <interface name={peer}>\n"
    '    <method name="Ping"/>\n'
    '    <method name="GetMachineId">\n'
    '      <arg type="s" name="machine_uuid" direction="out"/>\n'
    "    </method>\n"
    "  </interface>\n"
    "  <interface name={introspectable}>\n"
    '    <method name="Introspect">\n'
    '      <arg type="s" name="xml_data" direction="out"/>\n'
    "    </method>\n"
    "  </interface>\n"
)


def quoteattr(value: str) -> str:
    return f'"{html.escape(value, quote=True)}"'


def _method_xml(spec: MethodSpec) -> str:
    args = "".join(f'      <arg type="s" name={quoteattr(name)} direction="in"/>\n'
                   for name in spec.arg_names)
    args += f'      <arg type="s" name={quoteattr(RESULT_ARG)} direction="out"/>\n'
    return f"    <method name={quoteattr(spec.method.value)}>\n{args}    </method>\n"


def _signal_xml(name: str, arg_names: tuple[str, ...]) -> str:
    args = "".join(f'      <arg type="s" name={quoteattr(arg)}/>\n' for arg in arg_names)
    return f"    <signal name={quoteattr(name)}>\n{args}    </signal>\n"


def introspection_xml() -> str:
    """Introspection data for ``OBJECT_PATH``: the interfaces of ``METHODS``, in table order."""
    interfaces: dict[str, list[str]] = {}
    for spec in METHODS.values():
        interfaces.setdefault(spec.interface, []).append(_method_xml(spec))
    for interface, signals in SIGNALS.items():
        interfaces.setdefault(interface, []).extend(_signal_xml(*s) for s in signals)
    body = "".join(f"  <interface name={quoteattr(name)}>\n{''.join(parts)}  </interface>\n"
                   for name, parts in interfaces.items())
    standard = _STANDARD.format(peer=quoteattr(PEER_INTERFACE),
                                introspectable=quoteattr(INTROSPECTABLE_INTERFACE))
    return f"{_DOCTYPE}<node>\n{body}{standard}</node>\n"


def parent_node_xml(path: str) -> str | None:
    """Introspection of an ancestor of the object path (None: ``path`` is not one)."""
    prefix = path.rstrip("/") + "/"
    if not OBJECT_PATH.startswith(prefix):
        return None
    child = OBJECT_PATH[len(prefix):].split("/")[0]
    return f"<node>\n  <node name={quoteattr(child)}/>\n</node>\n"
