"""A private D-Bus session bus: its configuration, for the demo, the tests and the benchmarks.

The demo runs the broker on a bus of its own (never the user's session bus); tests and
benchmarks do the same with a services directory for D-Bus activation. The policy is the
usual session-bus one: any connection may own any name and talk to anyone.
"""

from __future__ import annotations

from pathlib import Path

_TEMPLATE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
{servicedir}  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def bus_config(socket: Path, services_dir: Path | None = None) -> str:
    """``dbus-daemon --config-file`` text for a bus listening on ``socket``.

    With ``services_dir``, the bus starts services from the ``.service`` files there.
    """
    servicedir = f"  <servicedir>{services_dir}</servicedir>\n" if services_dir else ""
    return _TEMPLATE.format(socket=socket, servicedir=servicedir)
