"""`kill -9` in the middle of a stream of writes leaves a loadable store (the single-file store
and the record store), and a sign-in the caller was answered survives a kill right after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.records import RecordStore
from authbroker.daemon.store import Store
from fixtures.broker_core import accounts, make_core, silent

# Loads the store (so it also survives the previous kill), then saves version after version
# of a ~300 KB document, printing each version once its save has returned.
_WRITER = """
import sys
from pathlib import Path
from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.store import Store
path = Path(sys.argv[1])
store = Store(path, FileKeyProvider(path.with_name("store.key")))
version = store.load().get("version", 0)
print("loaded", version, flush=True)
while True:
    version += 1
    store.save({"version": version, "payload": str(version) * (300_000 // len(str(version)))})
    print(version, flush=True)
"""


def _kill_mid_writes(writer: str, path: Path) -> tuple[int, list[int]]:
    """Run ``writer`` on ``path`` ~0.5 s, SIGKILL it; (version it loaded, completed writes)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first[0] == "loaded", first
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = [int(line) for line in proc.stdout.read().split()]
    proc.stdout.close()
    assert completed, "the writer made no write in 0.5 s"
    return int(first[1]), completed


def _kill_while_writing(path: Path) -> tuple[int, int]:
    """Run the writer ~0.5 s, SIGKILL it; return (version it loaded, last completed save)."""
    loaded, completed = _kill_mid_writes(_WRITER, path)
    return loaded, completed[-1]


def test_kill_9_during_writes_leaves_a_loadable_store(tmp_path: Path) -> None:
    path = tmp_path / "store.enc"
    expected_loaded = 0
    for _ in range(3):
        loaded, last = _kill_while_writing(path)
        assert loaded == expected_loaded  # the child read what the last round left
        doc = Store(path, FileKeyProvider(tmp_path / "store.key")).load()
        # the save in flight at the kill either fully happened or not at all
        assert doc["version"] in (last, last + 1)
        assert doc["payload"] == str(doc["version"]) * (300_000 // len(str(doc["version"])))
        assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        # load() removed the dead writer's temporary file, if it left one
        assert sorted(p.name for p in tmp_path.iterdir()) == ["store.enc", "store.key"]
        expected_loaded = doc["version"]


# Saves version 1, then dies (SIGKILL) half-way through writing the bytes of version 2.
_TORN_WRITER = """
import os, signal, sys
from pathlib import Path
from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.store import Store
path = Path(sys.argv[1])
store = Store(path, FileKeyProvider(path.with_name("store.key")))
store.save({"version": 1})
real_write = os.write
def torn_write(fd, data):
    real_write(fd, bytes(data[: len(data) // 2]))
    os.kill(os.getpid(), signal.SIGKILL)
os.write = torn_write
store.save({"version": 2, "payload": "x" * 100_000})
"""


def test_writer_killed_half_way_through_its_bytes_leaves_the_previous_version(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.enc"
    proc = subprocess.run([sys.executable, "-c", _TORN_WRITER, str(path)], timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert any(".tmp-" in p.name for p in tmp_path.iterdir())  # the torn temporary file
    assert Store(path, FileKeyProvider(tmp_path / "store.key")).load() == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.enc", "store.key"]


# The record store: commits version after version of several accounts, one account per
# transaction (as the broker does), printing each version once its commit has returned.
_RECORD_WRITER = """
import sys
from pathlib import Path
from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.records import Change, RecordStore
path = Path(sys.argv[1])
store = RecordStore(path, FileKeyProvider(path.with_name("store.key")))
loaded = store.open()
version = max((int(a["version"]) for a in loaded.accounts.values()), default=0)
print("loaded", version, flush=True)
while True:
    version += 1
    hid = f"uid{version % 5}.tid"
    store.commit([Change(hid, {"homeAccountId": hid, "version": version},
                         {"plain": str(version) * (30_000 // len(str(version)))})],
                 durable=version % 2 == 0)
    print(version, flush=True)
"""


def test_kill_9_during_record_commits_leaves_every_account_readable(tmp_path: Path) -> None:
    path = tmp_path / "store.enc"
    expected = 0
    for _ in range(3):
        loaded_version, done = _kill_mid_writes(_RECORD_WRITER, path)
        assert loaded_version == expected
        store = RecordStore(path, FileKeyProvider(tmp_path / "store.key"))
        loaded = store.open()
        latest = max(int(a["version"]) for a in loaded.accounts.values())
        assert latest in (done[-1], done[-1] + 1)  # the commit in flight: all or nothing
        for hid, account in loaded.accounts.items():  # each row is whole and its own
            version = int(account["version"])
            assert hid == f"uid{version % 5}.tid"
            tokens = store.read_tokens(hid)
            assert tokens == {"plain": str(version) * (30_000 // len(str(version)))}
        store.close()
        assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        expected = latest


# Signs in through the broker core (real authority, scripted person), with "refresh" then
# forces a refresh (the refresh token rotates: the old one is dead at the authority), prints
# the last reply and dies (SIGKILL) at once: no aclose, no later flush.
_SIGN_IN_THEN_DIE = """
import asyncio, os, signal, sys
from pathlib import Path
from fixtures.broker_core import interactive, make_core, person, silent
async def main():
    core = make_core(sys.argv[1], Path(sys.argv[2]), person())
    token = await interactive(core)
    if sys.argv[3] == "refresh":
        token = await silent(core, force_refresh=True)
    print(token.account.home_account_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""


@pytest.mark.parametrize("last", ["sign-in", "refresh"])
def test_kill_9_right_after_a_reply_keeps_what_it_answered(last: str, authority,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "store.enc"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", _SIGN_IN_THEN_DIE, authority.authority,
                           str(path), last], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    hid = proc.stdout.strip()
    assert hid

    async def restarted() -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: must not be needed
        assert [a.home_account_id for a in await accounts(core)] == [hid]
        token = await silent(core, force_refresh=True)
        assert token.account and token.account.home_account_id == hid
        await core.aclose()

    asyncio.run(restarted())
