"""``kill -9`` and the device's state (issue 10): the registered device (the store's sealed meta
row) and the account's PRT (``#prt`` in its snapshot) survive a broker killed right after it
answered a registration; a kill in the middle of a stream of device, PRT and account writes
leaves them whole, as acknowledged (or as the step in flight left them), with nothing lost; and
an unregistration answered stays done. Each broker is a real process (device_crash_writer.py:
real authority, real msal, real record store) killed by SIGKILL; a broker core started again
on the same store, with nobody to sign in, is what a user would meet."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from authbroker import broker1
from authbroker.daemon.device_calls import META_KEY
from authbroker.daemon.partitions import PRT
from authbroker.daemon.persistence import AccountStore
from authbroker.daemon.prt import PrtState
from authbroker.errors import BrokerStatusError
from daemon.device_crash_writer import CYCLE
from daemon.test_device_core import admin_devices, device_status, unregister
from daemon.test_prt_core import APP, claims
from fixtures.broker_core import make_core, silent

WRITER = Path(__file__).with_name("device_crash_writer.py")
#: The stream's kill rounds, each after a cycle of steps at least: None, killed by the test
#: at a random point (in the middle of a step, mostly); a kind, the writer kills itself right
#: after a step of that kind was acknowledged (nothing in flight: all of it must be there).
ROUNDS = (None, "disable", None, "prt")


def child_env() -> dict[str, str]:
    paths = [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_to_death(mode: str, authority: Any, path: Path) -> list[list[str]]:
    """Run the writer in ``mode`` (it kills itself by SIGKILL once answered); its lines."""
    proc = subprocess.run([sys.executable, str(WRITER), mode, authority.authority, str(path)],
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    return [line.split() for line in proc.stdout.splitlines()]


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and r.name.startswith("authbroker")]


def no_corrupt_files(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if ".corrupt-" in p.name]


def test_a_registration_answered_survives_kill_9(authority: Any, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    [[said, device_id, hid]] = run_to_death("register", authority, path)
    assert said == "registered"

    async def restarted() -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: must not be needed
        device = await device_status(core)
        assert device is not None and device.device_id == device_id, device
        assert device.state == "registered" and device.usable and device.prt == "active"
        assert device.home_account_id == hid
        assert [e["homeAccountId"] for e in core.accounts.entries()] == [hid]
        token = await silent(core, client_id=APP, account=core.accounts.account(hid))
        assert claims(token.access_token)["deviceid"] == device_id
        assert core.prt.exchanges == 1  # served from the PRT the dead broker had answered with
        await core.aclose()

    with caplog.at_level(logging.ERROR, "authbroker"):
        asyncio.run(restarted())
    assert errors_logged(caplog) == []
    no_corrupt_files(tmp_path)


@pytest.mark.parametrize("mode", ["unregister-local", "unregister"])
def test_an_unregistration_answered_survives_kill_9(mode: str, authority: Any, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    [[_, device_id, hid]] = run_to_death("register", authority, path)
    assert run_to_death(mode, authority, path) == [["unregistered", device_id, hid]]

    async def restarted() -> None:
        core = make_core(authority.authority, path)
        assert await device_status(core) is None and core.devices.status() is None
        assert core.prt.state(hid)["prt"] == "none"
        with pytest.raises(BrokerStatusError) as err:  # no PRT left to serve another client
            await silent(core, client_id=APP, account=core.accounts.account(hid))
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert core.prt.exchanges == 0
        assert (await unregister(core)).reason == "no device is registered"
        await core.aclose()

    with caplog.at_level(logging.ERROR, "authbroker"):
        asyncio.run(restarted())
    assert errors_logged(caplog) == []
    saved = AccountStore(path, use_secret_service=False)
    try:
        loaded = saved.open()
        assert META_KEY not in loaded.meta and hid in loaded.accounts  # the account stays
        tokens = saved.read_tokens(hid)
        assert tokens is not None and PRT not in tokens
    finally:
        saved.close()
    expected = "enabled" if mode == "unregister-local" else "deleted"
    assert admin_devices(authority)[device_id]["state"] == expected
    no_corrupt_files(tmp_path)


# -- the stream -----------------------------------------------------------------------------------

class Stream:
    """The writer in ``stream`` mode, its lines read on a thread (so waits have deadlines)."""

    def __init__(self, authority: Any, path: Path, log: Path, die_after: str | None) -> None:
        self._log: IO[str] = open(log, "a")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), "stream", authority.authority, str(path),
             *([die_after] if die_after else [])],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=child_env())
        self.lines: queue.Queue[list[str] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.log = log

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.split())
        self.lines.put(None)

    def next(self, timeout: float = 30) -> list[str] | None:
        """The next line (None: the writer is gone)."""
        return self.lines.get(timeout=timeout)

    def kill(self) -> list[list[str]]:
        """SIGKILL (unless it is dead already); the lines it printed that were not read yet."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._log.close()
        assert self.proc.returncode == -signal.SIGKILL, self.log.read_text()[-3000:]
        rest = []
        while not self.lines.empty() and (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return rest


@dataclass
class Acknowledged:
    """What the writers were answered so far (or, after a check, what the store holds)."""

    device_id: str = ""
    hid: str = ""  # the device's account (its PRT's)
    hid2: str = ""  # the second account: its refresh token rotates
    state: str = "registered"
    prt: str = ""  # the PRT's fingerprint
    uti: str = ""  # the second account's access token
    prts: set[str] = field(default_factory=set)
    utis: set[str] = field(default_factory=set)
    apps: list[str] = field(default_factory=list)  # clients served from the PRT

    def first(self, line: list[str]) -> None:
        if line[0] == "registered":
            self.device_id, self.hid, self.prt, self.hid2, self.uti = line[1:6]
        else:  # the next writer read what the last check found
            assert line[:1] + line[1:5] == ["loaded", self.device_id, self.state, self.prt,
                                            self.uti], line
        self.prts.add(self.prt)
        self.utis.add(self.uti)

    def step(self, line: list[str]) -> None:
        kind = line[1]
        if kind == "prt":
            self.apps.append(line[2])
            self.prt = line[3]
            self.prts.add(self.prt)
            return
        self.uti = line[2]
        self.utis.add(self.uti)
        if kind != "refresh":
            self.state = "disabled" if kind == "disable" else "registered"


@dataclass
class Found:
    """What the store holds after a kill, read as a user's broker would read it."""

    state: str
    prt: str
    uti: str


def read_store(path: Path, seen: Acknowledged) -> str:
    """The store file, opened by itself: both accounts readable (none quarantined), the
    device account's PRT record whole and of the device; the PRT's fingerprint."""
    saved = AccountStore(path, use_secret_service=False)
    try:
        loaded = saved.open()
        assert set(loaded.accounts) == {seen.hid, seen.hid2}
        assert META_KEY in loaded.meta
        tokens, tokens2 = saved.read_tokens(seen.hid), saved.read_tokens(seen.hid2)
        assert tokens is not None and tokens2 is not None and PRT not in tokens2
        assert PRT in tokens, "the device account's PRT is gone"
        state = PrtState.from_record(tokens[PRT])  # ValueError: not whole
        assert state.device_id == seen.device_id and state.home_account_id == seen.hid
    finally:
        saved.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone() == (0,)
    db.close()
    return hashlib.sha256(state.prt.encode()).hexdigest()[:12]


async def restarted(authority: Any, path: Path, seen: Acknowledged, prt: str) -> Found:
    """A broker core on the store (nobody to sign in): the device's status, every client the
    PRT served still served (from the cache, no exchange), the second account's token, and
    a new client served from the PRT while the device is registered."""
    core = make_core(authority.authority, path)
    device = await device_status(core)
    assert device is not None and device.device_id == seen.device_id, device
    assert device.prt == ("active" if device.state == "registered" else "refused"), device
    account = core.accounts.account(seen.hid)
    for app in seen.apps:
        token = await silent(core, client_id=app, account=account)
        assert claims(token.access_token)["deviceid"] == seen.device_id
    assert core.prt.exchanges == 0
    token2 = await silent(core, account=core.accounts.account(seen.hid2))
    if device.state == "registered":
        token = await silent(core, client_id=str(uuid.uuid4()), account=account)
        assert claims(token.access_token)["deviceid"] == seen.device_id
        assert core.prt.exchanges == 1
    await core.aclose()
    return Found(device.state, prt, str(claims(token2.access_token)["uti"]))


def check_round(seen: Acknowledged, in_flight: list[str] | None, found: Found) -> None:
    """What the store holds is what was acknowledged, or what the step in flight wrote."""
    kind = in_flight[1] if in_flight else None
    marks = {"disable": "disabled", "enable": "registered"}
    context = f"in flight: {in_flight}, acknowledged: {seen.state} {seen.prt} {seen.uti}"
    assert found.state == seen.state or (kind in marks and found.state == marks[kind]), context
    assert found.prt == seen.prt or (kind == "prt" and found.prt not in seen.prts), context
    assert found.uti == seen.uti or (kind in ("refresh", *marks) and found.uti not in seen.utis), \
        context
    seen.state, seen.prt, seen.uti = found.state, found.prt, found.uti
    seen.prts.add(found.prt)
    seen.utis.add(found.uti)


def test_kill_9_during_device_prt_and_account_writes_keeps_them_whole(
        authority: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    seen = Acknowledged()
    rng = random.Random()
    kinds: set[str] = set()
    for die_after in ROUNDS:
        stream = Stream(authority, path, tmp_path / "writer.log", die_after)
        lines: list[list[str]] = []
        target = len(CYCLE) + rng.randrange(len(CYCLE))
        try:
            while die_after or sum(line[0] == "ok" for line in lines) < target:
                line = stream.next(60 if not lines else 30)
                if line is None:
                    break
                lines.append(line)
            if not die_after:
                time.sleep(rng.uniform(0, 0.02))  # somewhere in a step
        finally:
            lines += stream.kill()
        assert lines and lines[-1][0] in ("ok", "do"), stream.log.read_text()[-3000:]
        seen.first(lines[0])
        in_flight = None
        for line in lines[1:]:
            if line[0] == "ok":
                seen.step(line)
                kinds.add(line[1])
                in_flight = None
            else:
                assert line[0] == "do", line
                in_flight = line
        if die_after:
            assert lines[-1][:2] == ["ok", die_after] and in_flight is None, lines[-1]
        no_corrupt_files(tmp_path)
        prt = read_store(path, seen)
        with caplog.at_level(logging.ERROR, "authbroker"):
            found = asyncio.run(restarted(authority, path, seen, prt))
        check_round(seen, in_flight, found)
        assert errors_logged(caplog) == []
    assert kinds == set(CYCLE)
