"""Child processes of the harness: the local authority and our daemon, started, awaited, stopped.

* :class:`Child`: any command with an environment, its stderr appended to a log file; waits
  until it is ready, stops it with SIGTERM (then SIGKILL after a grace period), and reads the
  log back (its tail, its last problem) for failure messages.
* :class:`AuthorityProcess`: ``python -m authbroker authority --port 0``; ready once it prints
  its JSON line (``info``: authority, tenant_id, ca_bundle, ca_cert, port, jwks_uri …).
* :class:`DaemonProcess`: ``python -m authbroker daemon``; ready once it owns the Broker1 name
  on its bus. :func:`served_calls` reads what it served from its access log.
* :func:`daemon_env`: the environment the demo, the tests and the benchmarks give a daemon.
* :func:`environ`: changes to ``os.environ`` undone when the block ends.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol, Self

from authbroker import config
from authbroker.broker1 import BUS_NAME
from authbroker.devkit import useragent
from authbroker.errors import AuthBrokerError

PIPE = subprocess.PIPE
CA_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # what requests (msal) and azure-core trust
DAEMON_START_TIMEOUT = 20.0
# "<date> <time> authbroker.daemon.access <LEVEL> <method> correlation=<id> <outcome> in <ms> ms"
_ACCESS_LINE = re.compile(
    rf"^\S+ \S+ {re.escape(config.ACCESS_LOGGER)} [A-Z]+ (\w+) correlation=\S+ .* in [\d.]+ ms$",
    re.MULTILINE,
)


class StartError(AuthBrokerError):
    """A child process exited or did not become ready in time; the hint names its log."""


@contextmanager
def environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    """Apply ``changes`` to ``os.environ`` (``None`` removes a variable) until the block ends."""
    saved = {key: os.environ.get(key) for key in changes}
    _apply(os.environ, changes)
    try:
        yield
    finally:
        _apply(os.environ, saved)


def _apply(env: Any, changes: Mapping[str, str | None]) -> None:
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value


class Child:
    """One command as a child process: stderr appended to ``log``, stdout to a file, a pipe
    (``PIPE``) or nowhere, stdin nothing or a pipe; ``env`` is read at each start. Also a
    context manager."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
                 stdout: Path | int = subprocess.DEVNULL, stdin: int = subprocess.DEVNULL,
                 what: str | None = None, grace: float = 10.0, new_session: bool = False,
                 ) -> None:
        self.argv, self.log, self.stdout, self.stdin = list(argv), Path(log), stdout, stdin
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.what = what or Path(self.argv[0]).name
        self.grace, self.new_session = grace, new_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.what} was never started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err, _output(self.stdout) as out:
            self.process = subprocess.Popen(
                self.argv, stdin=self.stdin, stdout=out, stderr=err, env=self.env,
                start_new_session=self.new_session,
            )  # fmt: skip
        return self

    def read_line(self, timeout: float) -> str:
        """The next line of a ``PIPE`` stdout, or "" if none comes within ``timeout``."""
        assert self.process is not None and self.process.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                return ""
        return self.process.stdout.readline().decode(errors="replace")

    def wait_until(self, ready: Callable[[], bool], timeout: float, *,
                   error: type[StartError] = StartError, poll: float = 0.02) -> None:
        """Return once ``ready()``; if the child exits or ``timeout`` passes first, stop it and
        raise ``error``."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running() or time.monotonic() > deadline:
                raise self.failed(error, timeout)
            time.sleep(poll)

    def failed(self, error: type[StartError] = StartError, timeout: float | None = None,
               ) -> StartError:
        """Stop the child; the error saying it did not start (with its exit code, if any)."""
        code = self.returncode
        self.stop()
        why = f"exit {code}" if code is not None else f"not ready within {timeout:.0f} s"
        return error(f"{self.what} did not start ({why})", hint=f"see {self.log}")

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        """Send ``signum`` (default SIGTERM); SIGKILL if it lingers ``grace`` seconds."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signum)
            try:
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        return proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def last_problem(self, *ignore: str) -> str | None:
        """The message of the log's last WARNING or ERROR line (without the time and logger
        name), skipping lines containing any of ``ignore``; None if there is none."""
        lines = [ln for ln in self.log_text().splitlines()
                 if (" ERROR " in ln or " WARNING " in ln) and not any(s in ln for s in ignore)]
        return lines[-1].split(" ", 2)[-1] if lines else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def _output(target: Path | int) -> Iterator[IO[bytes] | int]:
    if isinstance(target, Path):
        with open(target, "ab") as out:
            yield out
    else:
        yield target


def _info_field(key: str, doc: str) -> Any:
    """A read-only attribute: ``key`` of the authority's JSON line."""
    return property(lambda self: str(self.info[key]), doc=doc)


class AuthorityProcess(Child):
    """``python -m authbroker authority --data-dir DATA_DIR --port 0 *extra_args``; started
    once it printed its JSON line (``info``). Its log defaults to ``DATA_DIR/../authority.log``."""

    def __init__(self, data_dir: Path, *extra_args: str, env: Mapping[str, str] | None = None,
                 log: Path | None = None, timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        argv = [sys.executable, "-m", "authbroker", "authority", "--data-dir", str(self.data_dir),
                "--port", "0", *extra_args]
        super().__init__(argv, env=env, log=log or self.data_dir.parent / "authority.log",
                         stdout=PIPE, what="the authority")
        self.timeout = timeout
        self.info: dict[str, Any] = {}

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().start()
        try:
            self.info = json.loads(self.read_line(self.timeout))
        except ValueError:
            raise self.failed(timeout=self.timeout) from None
        return self

    authority = _info_field("authority", "its URL, https://127.0.0.1:PORT")
    tenant_id = _info_field("tenant_id", "its demo tenant")
    ca_bundle = _info_field("ca_bundle", "the machine's roots and its CA (REQUESTS_CA_BUNDLE)")
    ca_cert = _info_field("ca_cert", "its CA certificate alone")
    pop_resource = _info_field("pop_resource", "its PoP-protected demo resource's https URL")
    pop_resource_scope = _info_field("pop_resource_scope", "the scope a token for it asks for")
    device_discovery = _info_field("device_discovery", "its DRS discovery URL (/{tenant}/Discover)")
    device_join_endpoint = _info_field("device_join_endpoint", "its DRS join endpoint")
    device_admin = _info_field("device_admin", "its device admin API (/admin/devices)")

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def url(self, path: str) -> str:
        return f"{self.authority}{path}"

    def trust_env(self) -> dict[str, str]:
        """The variables that make requests (msal) and azure-core trust it (its bundle)."""
        return dict.fromkeys(CA_VARS, self.ca_bundle)


class _Bus(Protocol):
    """What a daemon needs of its bus (a :class:`~authbroker.devkit.privatebus.PrivateBus`)."""

    def name_has_owner(self, name: str) -> bool: ...


def daemon_argv(*args: str, store: Path | None = None) -> list[str]:
    """``python -m authbroker daemon``; without ``store`` it keeps the default one."""
    store_args = ["--store", str(store)] if store is not None else []
    return [sys.executable, "-m", "authbroker", "daemon", *store_args, *args]


class DaemonProcess(Child):
    """``python -m authbroker daemon *args`` on ``bus`` with ``env``: started once it owns the
    Broker1 name; stderr to ``workdir/daemon.log``, stdout to ``workdir/daemon.stdout``."""

    def __init__(self, bus: _Bus, env: Mapping[str, str], workdir: Path, *args: str,
                 store: Path | None = None, timeout: float = DAEMON_START_TIMEOUT) -> None:
        workdir = Path(workdir)
        super().__init__(daemon_argv(*args, store=store), env=env, log=workdir / "daemon.log",
                         stdout=workdir / "daemon.stdout", what="the daemon")
        self.bus, self.args, self.store, self.timeout = bus, args, store, timeout
        self.stdout_path = workdir / "daemon.stdout"

    def start(self) -> Self:
        super().start()
        self.wait_until(lambda: self.bus.name_has_owner(BUS_NAME), self.timeout)
        return self

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        code = super().stop(signum)
        deadline = time.monotonic() + 5
        while self.bus.name_has_owner(BUS_NAME) and time.monotonic() < deadline:
            time.sleep(0.02)
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def stdout_text(self) -> str:
        path = self.stdout_path
        return path.read_text(errors="replace") if path.exists() else ""

    def served_calls(self) -> list[str]:
        """The Broker1 methods it served so far, in order (from its access log)."""
        return served_calls(self.log_text())

    def sign_ins(self) -> int:
        """How many times the scripted user agent it started signed somebody in."""
        log = (self.env or {}).get(config.UA_LOG)
        return useragent.sign_ins(Path(log)) if log else 0


def served_calls(log_text: str) -> list[str]:
    """The Broker1 methods a daemon's log shows it answered, in order: the lines of its access
    logger (``config.ACCESS_LOGGER``), whatever their level or outcome."""
    return _ACCESS_LINE.findall(log_text)


def daemon_env(work: Path, authority: AuthorityProcess | None = None, *,
               bus: Any = None, browser: Mapping[str, str] | None = None, ui: str | None = None,
               overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment for a daemon: ``bus.env`` (else ``os.environ``) with its config and
    state under ``work``, the plugin's backend choice removed, signing in at ``authority``
    (trusting its CA; the routing setting on, so that requests naming Microsoft's public-cloud
    hosts go there too) with the scripted user agent (``browser``, default: logging to
    ``work/useragent.log``), ``ui`` as its sign-in UI if given; ``overrides`` last (``None``
    removes a variable)."""
    env = dict(bus.env if bus is not None else os.environ)
    env.pop(config.BACKEND, None)
    env.update(XDG_CONFIG_HOME=str(work / "config"), XDG_STATE_HOME=str(work / "state"))
    env.update(browser if browser is not None else useragent.browser_env(work / "useragent.log"))
    if authority is not None:
        env.update(authority.trust_env())
        env[config.AUTHORITY] = authority.authority
        env[config.ROUTE_PUBLIC_CLOUD] = "1"  # a private daemon: Microsoft's hosts go there too
    if ui is not None:
        env[config.UI] = ui
    _apply(env, overrides or {})
    return env
