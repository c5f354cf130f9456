"""A private D-Bus session bus (its own dbus-daemon) for the demo, the tests and the benchmarks.

The demo runs the broker on a bus of its own (never the user's session bus); tests and
benchmarks do the same with a services directory for D-Bus activation. The policy is the
usual session-bus one: any connection may own any name and talk to anyone. Services the bus
activates inherit the environment it was started with (``PrivateBus.env``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Self

from jeepney import DBusAddress, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, Proxy, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from authbroker.devkit.processes import PIPE, Child, StartError, environ

SESSION_BUS_VAR = "DBUS_SESSION_BUS_ADDRESS"
#: Variables that would point a client at another bus (or keyring) than the private one.
FOREIGN_VARS = ("DBUS_STARTER_ADDRESS", "DBUS_STARTER_BUS_TYPE", "GNOME_KEYRING_CONTROL")

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


def dbus_daemon() -> str | None:
    """The ``dbus-daemon`` command, or None if it is not installed."""
    return shutil.which("dbus-daemon")


def write_service_file(services_dir: Path, name: str, exec_argv: Sequence[str],
                       env: Mapping[str, str] | None = None) -> Path:
    """Write ``<name>.service`` so the bus starts ``exec_argv`` when ``name`` is called;
    ``env`` entries are passed through ``/usr/bin/env`` on the Exec line."""
    argv = list(exec_argv)
    if env:
        argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
    path = Path(services_dir) / f"{name}.service"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"[D-BUS Service]\nName={name}\nExec={shlex.join(argv)}\n")
    os.replace(tmp, path)
    return path


class PrivateBus:
    """A session-type dbus-daemon on a socket in a short temporary directory (``dir``,
    removed at stop), with a services directory unless ``services=False`` (then nothing is
    ever activated). ``env`` (default: ``os.environ`` at start) is what activated services
    inherit; :meth:`session` makes it this process's session bus. Also a context manager."""

    def __init__(self, *, services: bool = True, env: Mapping[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ab-bus-", dir="/tmp"))  # sun_path: 108 bytes
        self.address = f"unix:path={self.dir / 'bus'}"
        self.services_dir = self.dir / "services" if services else None
        self.log_path = self.dir / "dbus-daemon.log"
        self.timeout = timeout
        self._given_env = dict(env) if env is not None else None
        self._base_env: dict[str, str] = {}
        self._child: Child | None = None

    @property
    def process(self) -> Any:
        """The dbus-daemon's ``Popen``."""
        return self._child.process if self._child else None

    @property
    def env(self) -> dict[str, str]:
        """A fresh environment for subprocesses that should use this bus."""
        return dict(self._base_env, **{SESSION_BUS_VAR: self.address})

    def start(self) -> Self:
        exe = dbus_daemon()
        if exe is None:
            self.stop()
            raise StartError("dbus-daemon is not installed",
                             hint="run scripts/install-system-deps.sh")
        env = dict(os.environ if self._given_env is None else self._given_env)
        for key in FOREIGN_VARS:
            env.pop(key, None)
        self._base_env = dict(env, **{SESSION_BUS_VAR: self.address})
        if self.services_dir is not None:
            self.services_dir.mkdir(exist_ok=True)
        config = self.dir / "bus.conf"
        config.write_text(bus_config(self.dir / "bus", self.services_dir))
        self._child = Child([exe, f"--config-file={config}", "--print-address=1", "--nofork"],
                            env=self._base_env, log=self.log_path, stdout=PIPE,
                            what="dbus-daemon", grace=3.0, new_session=True).start()
        if not self._child.read_line(self.timeout):  # printed once it listens
            log = self._child.log_text().strip()
            self.stop()
            raise StartError(f"dbus-daemon did not start (exit {self._child.returncode})",
                             hint=log or None)
        return self

    def stop(self) -> None:
        """Stop the dbus-daemon and remove its directory."""
        if self._child is not None:
            self._child.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Make this bus ``os.environ``'s session bus until the block ends."""
        with environ({SESSION_BUS_VAR: self.address, **dict.fromkeys(FOREIGN_VARS)}):
            yield

    # -- talking to the bus itself -----------------------------------------------------------
    def connect(self) -> DBusConnection:
        """A new blocking jeepney connection to this bus (close it when done)."""
        return open_dbus_connection(self.address)

    def call_bus(self, method: str, *args: object, timeout: float = 5.0) -> tuple[Any, ...]:
        """Call ``org.freedesktop.DBus.<method>(*args)``; its reply body."""
        with closing(self.connect()) as conn:
            return tuple(getattr(Proxy(message_bus, conn, timeout=timeout), method)(*args))

    def name_has_owner(self, name: str) -> bool:
        return bool(self.call_bus("NameHasOwner", name)[0])

    def owner_pid(self, name: str) -> int:
        return int(self.call_bus("GetConnectionUnixProcessID", name)[0])

    def wait_for_name(self, name: str, *, owned: bool = True, timeout: float = 10.0) -> None:
        """Return once ``name`` is owned (or, with ``owned=False``, no longer owned)."""
        deadline = time.monotonic() + timeout
        with closing(self.connect()) as conn:
            proxy = Proxy(message_bus, conn, timeout=timeout)
            while bool(proxy.NameHasOwner(name)[0]) != owned:
                if time.monotonic() > deadline:
                    state = "nobody owns" if owned else "someone still owns"
                    raise TimeoutError(f"{state} {name} on the private bus after {timeout} s")
                time.sleep(0.01)

    def ping(self, name: str, path: str = "/", timeout: float = 5.0) -> None:
        """org.freedesktop.DBus.Peer.Ping ``name`` (activating it if need be)."""
        addr = DBusAddress(path, bus_name=name, interface="org.freedesktop.DBus.Peer")
        with closing(self.connect()) as conn:
            unwrap_msg(conn.send_and_get_reply(new_method_call(addr, "Ping"), timeout=timeout))

    def update_activation_environment(self, env: Mapping[str, str]) -> None:
        """Add variables to the environment of services the bus activates from now on."""
        self.call_bus("UpdateActivationEnvironment", dict(env))

    def write_service_file(self, name: str, exec_argv: Sequence[str],
                           env: Mapping[str, str] | None = None) -> Path:
        """Make ``name`` activatable (starting ``exec_argv``) and have the bus reload."""
        assert self.services_dir is not None, "this bus was started without a services dir"
        path = write_service_file(self.services_dir, name, exec_argv, env)
        self.call_bus("ReloadConfig")
        return path
