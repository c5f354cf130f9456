"""Private, throwaway resources for the daemon and plugin benchmarks, torn down on exit.

All of it is ``authbroker.devkit`` (the same harness as the demo and the tests), named for
the benchmarks:

* :func:`private_bus`: a ``dbus-daemon`` of our own (session type, unix socket, a services
  directory for activation files);
* :func:`authority`: the local authority (``authbroker authority --port 0``) on 127.0.0.1;
* :func:`broker`: ``authbroker daemon`` on that bus, behind that authority, with a store in a
  temporary directory. No Secret Service runs on the private bus, so the store uses its 0600
  key-file mode; sign-ins are done by the scripted user agent (``$BROWSER``, logging to
  ``ua-daemon.log``);
* :func:`environ`: ``os.environ`` changes undone on exit (clients in this process find the bus
  and trust the authority through it);
* :func:`service`: any subprocess, stopped with SIGTERM (then SIGKILL) on exit;
* :func:`write_users`: a users file of N generated users for ``authbroker authority --users``;
* :func:`rss_mb`, :func:`io_counters`, :func:`dir_bytes`: a process's memory and write
  counters (``/proc``), a directory's size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from authbroker import broker1
from authbroker.devkit import processes, useragent
from authbroker.devkit.privatebus import PrivateBus
from authbroker.devkit.processes import AuthorityProcess, Child, DaemonProcess

REPO = Path(__file__).resolve().parents[1]
Authority = AuthorityProcess
sign_ins = useragent.sign_ins


class Bus(PrivateBus):
    """The devkit bus, with the two names ``bench_daemon`` calls it by."""

    def wait(self, name: str, *, owned: bool = True, timeout: float = 20.0) -> None:
        self.wait_for_name(name, owned=owned, timeout=timeout)

    def activatable(self, name: str, argv: Sequence[str]) -> None:
        """Write the ``.service`` file that lets the bus start ``argv`` for ``name``."""
        self.write_service_file(name, argv)


def service(argv: Sequence[str], env: Mapping[str, str], log: Path) -> Child:
    """``argv`` (stderr to ``log``) as a context manager: running until the block ends."""
    return Child(argv, env=env, log=log)


def private_bus(env: Mapping[str, str] | None = None) -> Bus:
    """A fresh dbus-daemon (a context manager); services it activates inherit ``env``
    (default: ours)."""
    return Bus(env=env)


def environ(**values: str) -> AbstractContextManager[None]:
    return processes.environ(values)


def authority(tmp: Path) -> AuthorityProcess:
    """The local authority in ``tmp/authority`` (a context manager), logging to
    ``tmp/authority.log``."""
    return AuthorityProcess(tmp / "authority", log=tmp / "authority.log")


def trust(auth: AuthorityProcess) -> dict[str, str]:
    return auth.trust_env()


def daemon_argv(tmp: Path) -> list[str]:
    return processes.daemon_argv(store=tmp / "store.enc")


def daemon_env(tmp: Path, auth: AuthorityProcess | None = None,
               bus: Bus | None = None) -> dict[str, str]:
    """The daemon's environment: private state dirs; signs in with the scripted user agent."""
    return processes.daemon_env(tmp, auth, bus=bus, ui="browser" if auth is not None else None,
                                browser=useragent.browser_env(tmp / "ua-daemon.log"))


@contextmanager
def broker(bus: Bus, auth: AuthorityProcess, tmp: Path) -> Iterator[DaemonProcess]:
    """``authbroker daemon`` owning the Broker1 name on ``bus``."""
    daemon = DaemonProcess(bus, daemon_env(tmp, auth, bus), tmp, store=tmp / "store.enc")
    with daemon:
        yield daemon
    bus.wait(broker1.BUS_NAME, owned=False)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of ``/proc/<pid>/status`` in MB: ``VmRSS`` (now) or ``VmHWM`` (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load {one:.1f} (1 min) / {five:.1f} (5 min)"


def write_users(path: Path, count: int, password: str) -> list[str]:
    """A users file (``authbroker authority --users``) of ``count`` users; their usernames."""
    names = [f"bench{i:05d}@bench.example" for i in range(count)]
    users = [{"username": n, "password": password, "name": f"Bench User {i}"}
             for i, n in enumerate(names)]
    path.write_text(json.dumps({"domain": "bench.example", "users": users}))
    return names


def io_counters(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` (all its threads): ``write_bytes`` (to the disk), ``wchar`` …"""
    pairs = (line.split(":") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key.strip(): int(value) for key, value in pairs}


def dir_bytes(path: Path) -> int:
    """The sizes of the files under ``path``, summed."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
