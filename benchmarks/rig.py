"""Private, throwaway resources for the daemon and plugin benchmarks, torn down on exit.

* :func:`private_bus`: a ``dbus-daemon`` of our own (session type, unix socket, a services
  directory for activation files);
* :func:`authority`: the local authority (``authbroker authority --port 0``) on 127.0.0.1;
* :func:`broker`: ``authbroker daemon`` on that bus, behind that authority, with a store in a
  temporary directory. No Secret Service runs on the private bus, so the store uses its 0600
  key-file mode; sign-ins are done by the scripted user agent (``$BROWSER``);
* :func:`environ`: ``os.environ`` changes undone on exit (clients in this process find the bus
  and trust the authority through it);
* :func:`service`: any subprocess, stopped with SIGTERM (then SIGKILL) on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, Proxy, open_dbus_connection

from authbroker import broker1
from authbroker.devkit.privatebus import bus_config

REPO = Path(__file__).resolve().parents[1]
@dataclass
class Bus:
    address: str
    services: Path

    def connect(self) -> DBusConnection:
        return open_dbus_connection(self.address)

    def call(self, method: str, *args: object) -> tuple:
        with closing(self.connect()) as conn:
            return getattr(Proxy(message_bus, conn, timeout=10), method)(*args)

    def owned(self, name: str) -> bool:
        return bool(self.call("NameHasOwner", name)[0])

    def owner_pid(self, name: str) -> int:
        return int(self.call("GetConnectionUnixProcessID", name)[0])

    def wait(self, name: str, *, owned: bool = True, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.owned(name) != owned:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} {'not' if owned else 'still'} owned after {timeout} s")
            time.sleep(0.01)

    def activatable(self, name: str, argv: Sequence[str]) -> None:
        """Write the ``.service`` file that lets the bus start ``argv`` for ``name``."""
        path = self.services / f"{name}.service"
        path.write_text(f"[D-BUS Service]\nName={name}\nExec={subprocess.list2cmdline(argv)}\n")
        self.call("ReloadConfig")


@contextmanager
def service(argv: Sequence[str], env: Mapping[str, str], log: Path,
            **popen: object) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (stderr to ``log``) until the block ends."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=popen.pop("stdout", subprocess.DEVNULL), stderr=err,
                                **popen)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def private_bus(env: Mapping[str, str] | None = None) -> Iterator[Bus]:
    """A fresh dbus-daemon; services it activates inherit ``env`` (default: ours)."""
    exe = shutil.which("dbus-daemon")
    if exe is None:
        raise RuntimeError("dbus-daemon is not installed: run scripts/install-system-deps.sh")
    base = Path(tempfile.mkdtemp(prefix="ab-bench-bus-", dir="/tmp"))  # sun_path is short
    services = base / "services"
    services.mkdir()
    config = base / "bus.conf"
    config.write_text(bus_config(base / "bus", services))
    argv = [exe, f"--config-file={config}", "--nofork", "--print-address=1"]
    try:
        with service(argv, env or os.environ, base / "bus.log", stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            if not proc.stdout.readline():
                raise RuntimeError(f"dbus-daemon did not start: {(base / 'bus.log').read_text()}")
            yield Bus(f"unix:path={base / 'bus'}", services)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Authority:
    url: str
    tenant_id: str
    ca_bundle: str


@contextmanager
def authority(tmp: Path) -> Iterator[Authority]:
    argv = [sys.executable, "-m", "authbroker", "authority", "--data-dir", str(tmp / "authority"),
            "--port", "0"]
    with service(argv, os.environ, tmp / "authority.log", stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the authority prints one JSON line once it listens
        if not line:
            raise RuntimeError(f"the authority did not start; see {tmp / 'authority.log'}")
        info = json.loads(line)
        yield Authority(info["authority"], info["tenant_id"], info["ca_bundle"])


def trust(auth: Authority) -> dict[str, str]:
    return {"REQUESTS_CA_BUNDLE": auth.ca_bundle, "CURL_CA_BUNDLE": auth.ca_bundle}


def daemon_argv(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "authbroker", "daemon", "--store", str(tmp / "store.enc")]


def daemon_env(tmp: Path, auth: Authority | None = None) -> dict[str, str]:
    """The daemon's environment: private state dirs; signs in with the scripted user agent."""
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"),
               XDG_CONFIG_HOME=str(tmp / "config"), AUTHBROKER_UA_LOG=str(tmp / "ua-daemon.log"))
    env.pop("AUTHBROKER_BACKEND", None)
    if auth is not None:
        env.update(trust(auth), AUTHBROKER_AUTHORITY=auth.url, AUTHBROKER_UI="browser",
                   BROWSER=f"{sys.executable} -m authbroker.devkit.useragent %s")
    return env


@contextmanager
def broker(bus: Bus, auth: Authority, tmp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``authbroker daemon`` owning the Broker1 name on ``bus``."""
    env = dict(daemon_env(tmp, auth), DBUS_SESSION_BUS_ADDRESS=bus.address)
    with service(daemon_argv(tmp), env, tmp / "daemon.log") as proc:
        bus.wait(broker1.BUS_NAME)
        yield proc
    bus.wait(broker1.BUS_NAME, owned=False)


def sign_ins(log: Path) -> int:
    """How many sign-ins the scripted user agent logging to ``log`` has done."""
    return log.read_text().count("signing in as") if log.exists() else 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load {one:.1f} (1 min) / {five:.1f} (5 min)"
