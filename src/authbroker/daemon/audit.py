"""The audit log: one JSON line per token the daemon hands out or refuses (never a token).

Each line says when, who called (bus name, pid, executable), for which client id, scopes and
account (homeAccountId, username), and how the call was served: ``"cache"`` (``"via"``:
``"memo"``, the broker's hot memo, or ``"msal"``, msal's cache), ``"refresh"`` (the client's
own refresh token), ``"family"`` (another family client's refresh token, FOCI), ``"prt"`` (the
device's Primary Refresh Token), ``"sign-in"``, or ``"error"`` with its status, tag (the number
the caller gets) and message (an error's ``context`` never holds a token). A
Proof-of-Possession call's line says ``"pop": true`` (never its SHR, key, nonce or HTTP
request); ``generateSignedHttpRequest``'s is ``"signed"``. Nothing from a token result but its
account is read, so no token or secret reaches the file.

The file is ``$XDG_STATE_HOME/authbroker/broker/audit.jsonl`` (0600, its directory 0700),
bounded: past :data:`MAX_BYTES` it becomes ``audit.jsonl.1`` (the previous ``.1`` is dropped)
and a new one starts, so the log never takes more than twice that. Each line is one
``write(2)`` on an ``O_APPEND`` descriptor: a line is on disk for readers at once, never torn
nor lost with the daemon, and costs about 6 µs on the event loop (a caller's repeated calls
reuse the encoded part of their line that does not change).
A failing disk is logged once and never fails a call; its lines are dropped, the file tried again
every :data:`RETRY_S`. :func:`read` gives the lines back (oldest first).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from authbroker import broker1, config
from authbroker.daemon.callers import executable
from authbroker.daemon.handler import CallContext
from authbroker.errors import BrokerStatusError
from authbroker.files import ensure_private_dir

log = logging.getLogger(__name__)

#: Each file's bound: audit.jsonl and audit.jsonl.1 are at most this big.
MAX_BYTES = 1_000_000
#: How the broker says a token was served (the engine's ``CACHE`` is msal's cache).
MEMO, CACHE, REFRESH, FAMILY, SIGN_IN, SIGNED, ERROR = (
    "memo", "cache", "refresh", "family", "sign-in", "signed", "error")
#: A token (or an SSO cookie) from the device's Primary Refresh Token (``prt_calls.py``).
PRT = "prt"
_MAX_CALLERS = 256
_MAX_MESSAGE = 300
#: After a failed write, lines are dropped for this long before the file is tried again.
RETRY_S = 10.0
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def default_path() -> Path:
    return config.state_dir() / "broker" / "audit.jsonl"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends audit lines to ``path`` (default: :func:`default_path`), rotating at
    ``max_bytes``. Called on the event loop; every method is cheap and never raises."""

    def __init__(self, path: Path | None = None, *, max_bytes: int = MAX_BYTES) -> None:
        self.path = path or default_path()
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0
        self._retry_at = 0.0  # after a failure: when to try the file again
        self._executables: dict[tuple[str, int | None], str] = {}
        self._tails: dict[tuple[Any, ...], str] = {}  # served(): encoded lines' common parts

    # -- what a line says ---------------------------------------------------------------------

    def served(self, method: broker1.AnyMethod, ctx: CallContext,
               auth: broker1.AuthParameters, account: broker1.Account | None, how: str,
               started: float) -> None:
        """A token handed out; ``how`` is one of MEMO, CACHE, REFRESH, FAMILY, SIGN_IN, SIGNED."""
        hid, username = (account.home_account_id, account.username) if account else ("", "")
        key = (method, ctx.sender, ctx.pid, auth.client_id, auth.requested_scopes,
               auth.authority, hid, username, how, auth.pop_params is not None)
        tail = self._tails.get(key)  # a caller's repeated calls differ in time, id and ms only
        if tail is None:
            entry = self._static(method, ctx, auth)
            entry["account"] = account_of(hid, username)
            if how in (MEMO, CACHE):
                entry["served"], entry["via"] = CACHE, "memo" if how == MEMO else "msal"
            else:
                entry["served"] = how
            if len(self._tails) >= _MAX_CALLERS:
                self._tails.clear()
            tail = self._tails[key] = _encode(entry)[1:]
        ms = round((time.monotonic() - started) * 1000, 2)
        self.write_line(f'{{"time":"{_now()}","correlationId":{_encode(ctx.correlation_id)},'
                        f'"ms":{ms},{tail}')

    def refused(self, method: broker1.AnyMethod, ctx: CallContext,
                auth: broker1.AuthParameters | None, account: dict[str, str] | None,
                error: BaseException, started: float) -> None:
        """A token refused: ``error`` is the BrokerStatusError the caller gets (anything else
        is reported as the internal error the caller gets). ``auth`` is None for a call the
        service refused before its request was read (another uid, busy, malformed)."""
        entry: dict[str, Any] = {"time": _now(), "correlationId": ctx.correlation_id,
                                 "ms": round((time.monotonic() - started) * 1000, 2)}
        entry.update(self._static(method, ctx, auth), account=account, served=ERROR)
        if isinstance(error, BrokerStatusError):
            entry.update(status=int(error.status), tag=error.tag, errorCode=error.error_code,
                         error=str(error.context)[:_MAX_MESSAGE])
        else:
            entry.update(status=int(broker1.Status.UNEXPECTED), tag="internal",
                         errorCode=0, error=f"internal error ({type(error).__name__})")
        self.write(entry)

    def _static(self, method: broker1.AnyMethod, ctx: CallContext,
                auth: broker1.AuthParameters | None) -> dict[str, Any]:
        """What a caller's repeated calls have in common."""
        entry: dict[str, Any] = {
            "method": method.value,
            "caller": {"busName": ctx.sender, "pid": ctx.pid,
                       "executable": self._executable(ctx)},
            "clientId": auth.client_id if auth else "",
            "scopes": list(auth.requested_scopes) if auth else [],
            "authority": auth.authority if auth else "",
        }
        if auth is not None and auth.pop_params is not None:
            entry["pop"] = True
        return entry

    def _executable(self, ctx: CallContext) -> str:
        key = (ctx.sender, ctx.pid)
        found = self._executables.get(key)
        if found is None:
            if len(self._executables) >= _MAX_CALLERS:
                self._executables.clear()
            found = self._executables[key] = executable(ctx.pid)
        return found

    # -- the file -----------------------------------------------------------------------------

    def write(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one line."""
        self.write_line(_encode(entry))

    def write_line(self, text: str) -> None:
        """Append one line of JSON (rotating first when it would pass the bound)."""
        if self._fd is None and time.monotonic() < self._retry_at:
            return  # the file failed lately: retried every RETRY_S, not on every call
        line = (text + "\n").encode()
        try:
            if self._fd is None:
                self._open()
            elif self._size + len(line) > self.max_bytes and self._size:
                self._rotate()
            assert self._fd is not None
            self._size += os.write(self._fd, line)
        except OSError as exc:
            if not self._retry_at:
                log.warning("cannot write the audit log %s: %s", self.path, exc.strerror)
            self._retry_at = time.monotonic() + RETRY_S
            self.close()
        else:
            self._retry_at = 0.0

    def _open(self) -> None:
        ensure_private_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size
        if self._size >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self.close()
        os.replace(self.path, rotated(self.path))
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


def account_of(home_account_id: str | None, username: str | None) -> dict[str, str] | None:
    """A line's ``account`` (None: no account named or defaulted)."""
    if not home_account_id:
        return None
    return {"homeAccountId": home_account_id, "username": username or ""}


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def read(path: Path | None = None, since: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
    """The lines of the log and its rotated file, oldest first (unreadable lines skipped),
    from ``since`` (an aware datetime) on."""
    path = path or default_path()
    for part in (rotated(path), path):
        try:
            with open(part, encoding="utf-8", errors="replace") as fh:
                lines = list(fh)
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
                when = dt.datetime.fromisoformat(entry["time"])
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(entry, dict) and (since is None or when >= since):
                yield entry
