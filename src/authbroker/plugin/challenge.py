"""``WWW-Authenticate`` challenges (RFC 7235), parsed without I/O: the PoP nonce a resource wants.

One header may carry several challenges (``Bearer realm="x", PoP nonce="n"``), and several
headers are joined with commas; schemes and parameter names are case-insensitive, values are
tokens or quoted strings (with ``\\`` escapes). Malformed input never raises: what cannot be
read is skipped. Used by the PoP pipeline policy and ``authbroker token --pop-url``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Challenge", "parse_challenges", "pop_nonce"]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})\s*")
_TOKEN68 = re.compile(r"\s+([A-Za-z0-9\-._~+/]+=*)\s*(?=,|$)")
_COMMA = re.compile(r"\s*,\s*")
_ESCAPE = re.compile(r"\\(.)")
_JUNK = re.compile(r"[^,]*")  # always matches

POP_SCHEME = "pop"


@dataclass(frozen=True)
class Challenge:
    """One challenge: its scheme (lower case), its parameters (names lower case), or token68."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str = ""


def _value(raw: str) -> str:
    if raw.startswith('"'):
        return _ESCAPE.sub(r"\1", raw[1:-1])
    return raw


def _params(header: str, pos: int) -> tuple[dict[str, str], int]:
    """The auth-params of one challenge from ``pos``; stops before the next challenge."""
    params: dict[str, str] = {}
    while (param := _PARAM.match(header, pos)) is not None:
        params.setdefault(param[1].lower(), _value(param[2]))
        pos = param.end()
        comma = _COMMA.match(header, pos)
        if comma is None or _PARAM.match(header, comma.end()) is None:
            break  # the end, or a comma before the next challenge's scheme
        pos = comma.end()
    return params, pos


def parse_challenges(header: str | Iterable[str] | None) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (or in several, in order)."""
    if header is None:
        return []
    text = header if isinstance(header, str) else ", ".join(header)
    found: list[Challenge] = []
    pos = 0
    while (scheme := _SCHEME.match(text, pos)) is not None:
        pos = scheme.end()
        token68 = _TOKEN68.match(text, pos)
        if token68 is not None:
            found.append(Challenge(scheme[1].lower(), token68=token68[1]))
            pos = token68.end()
            continue
        params, pos = _params(text, pos)
        found.append(Challenge(scheme[1].lower(), params))
        pos = _JUNK.match(text, pos).end()  # type: ignore[union-attr]  # skip what is unreadable
    return found


def pop_nonce(header: str | Iterable[str] | None) -> str | None:
    """The nonce of the first ``PoP`` challenge that carries one (None: no such challenge)."""
    for challenge in parse_challenges(header):
        if challenge.scheme == POP_SCHEME and challenge.params.get("nonce"):
            return challenge.params["nonce"]
    return None
