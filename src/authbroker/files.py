"""Private files written so that a crash never leaves a half-written or world-readable one.

``write_private_atomic`` is the one writer of secrets on disk (the daemon's store and key file,
the authority's CA and signing keys): a fresh temporary file in the same directory (``O_EXCL``,
``O_NOFOLLOW``, mode 0600), every byte written and fsynced, renamed over the target, then the
directory fsynced so the rename itself survives a power cut. A failed write removes its
temporary file and leaves the old file as it was.
"""

from __future__ import annotations

import os
import secrets
from contextlib import suppress
from pathlib import Path

#: Temporary files are named ``.<name><TEMP_MARK><pid>-<random>``; see :func:`temp_owner_pid`.
TEMP_MARK = ".tmp-"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing directory is left as it is."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, readable by its owner only."""
    path = Path(path)
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def temp_owner_pid(path: Path, target_name: str) -> int | None:
    """The pid that wrote ``path`` if it is a temporary file of ``target_name``, else None."""
    prefix = f".{target_name}{TEMP_MARK}"
    if not path.name.startswith(prefix):
        return None
    pid_text = path.name[len(prefix):].split("-", 1)[0]
    return int(pid_text) if pid_text.isdigit() else None
