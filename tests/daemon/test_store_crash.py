"""`kill -9` in the middle of a stream of writes leaves a loadable store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.store import Store

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


def _kill_while_writing(path: Path) -> tuple[int, int]:
    """Run the writer ~0.5 s, SIGKILL it; return (version it loaded, last completed save)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first[0] == "loaded", first
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    completed = [int(line) for line in proc.stdout.read().split()]
    proc.stdout.close()
    assert completed, "the writer made no save in 0.5 s"
    return int(first[1]), completed[-1]


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
