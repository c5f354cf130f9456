"""``authbroker audit``: the daemon's audit log, every token it handed out or refused.

Reads ``$XDG_STATE_HOME/authbroker/broker/audit.jsonl`` and its rotated ``.1`` file (the format
is ``authbroker.daemon.audit``'s), oldest first; ``--since`` keeps the lines from a time on (a
duration back from now, ``90s``, ``15m``, ``1h``, ``2d``, ``1h30m``, or an ISO 8601 time, local
when it names no zone). The table prints one line per token; ``--output json`` prints the
lines as one JSON array. No log yet: an empty table or ``[]``, exit status 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

from authbroker.daemon import audit

EXIT_OK = 0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``'s value as an aware datetime (argparse reports a ValueError)."""
    value = text.strip().lower()
    if value and _DURATION.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value))
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)
    when = dt.datetime.fromisoformat(text.strip())
    return when if when.tzinfo is not None else when.astimezone()


since.__name__ = "duration or ISO time"  # argparse names the type in its error


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Show the broker's audit log: every token it handed out or "
        "refused, to whom (bus name, pid, program), for which client and account, and how "
        "(cache, refresh, family, sign-in, error).")
    parser.add_argument("--since", type=since, metavar="DURATION_OR_TIME",
                        help="only lines from then on: 15m, 1h, 2d, or an ISO 8601 time")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--file", type=Path, default=None,
                        help=f"the log to read (default: {audit.default_path()})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run(args: argparse.Namespace) -> int:
    entries = list(audit.read(args.file, args.since))
    if args.output == "json":
        print(json.dumps(entries, indent=2))
    else:
        print("\n".join(as_text(entries)))
    return EXIT_OK


def _how(entry: dict[str, Any]) -> str:
    served = str(entry.get("served", "?"))
    if served == "cache":
        return f"cache ({entry.get('via', '?')})"
    if served == "error":
        return f"error {entry.get('status', '?')}"
    return served


def _local(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(iso)


def as_text(entries: list[dict[str, Any]]) -> list[str]:
    """The table, line by line (local times)."""
    if not entries:
        return ["no tokens handed out or refused (in this period)"]
    header = ("TIME", "SERVED", "CLIENT ID", "ACCOUNT", "CALLER", "SCOPES")
    rows = [header]
    for e in entries:
        caller = e.get("caller") or {}
        program = Path(str(caller.get("executable") or "")).name
        who = f"pid {caller.get('pid')}" + (f" {program}" if program else "")
        account = (e.get("account") or {}).get("username") or "-"
        last = " ".join(e.get("scopes") or ())
        if e.get("served") == "error":
            last += f"  ({e.get('error', '')})"
        rows.append((_local(str(e.get("time"))), _how(e), str(e.get("clientId", "")), account,
                     who, last))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in rows]
