"""An unreadable store file is moved aside with an error; the daemon starts empty and goes on."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from authbroker.daemon.keys import FileKeyProvider
from authbroker.daemon.store import MAGIC, Store

TOKEN = "fake-refresh-token-" + secrets.token_hex(16)
DOC = {"accounts": {"a": {"username": "user@contoso.example"}}, "msal_cache": TOKEN}


def _store(path: Path) -> Store:
    return Store(path, FileKeyProvider(path.with_name("store.key")))


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_ciphertext_byte(data: bytes) -> bytes:
    return data[:-20] + bytes([data[-20] ^ 0x01]) + data[-19:]


def _wrong_version(data: bytes) -> bytes:
    return data[: len(MAGIC)] + (99).to_bytes(2, "big") + data[len(MAGIC) + 2 :]


def _next_version(data: bytes) -> bytes:
    return data[: len(MAGIC)] + (2).to_bytes(2, "big") + data[len(MAGIC) + 2 :]


CASES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncate,
    "zero-length": lambda data: b"",
    "header-only": lambda data: data[:30],
    "wrong-magic": lambda data: b"NOTASTOR" + data[8:],
    "plaintext-json": lambda data: b'{"accounts": {}, "padding": "' + b"x" * 64 + b'"}',
    "wrong-version": _wrong_version,
    "next-version": _next_version,
    "damaged-ciphertext": _flip_ciphertext_byte,
    "random-garbage": lambda data: secrets.token_bytes(len(data)),
}


def _assert_moved_aside(
    path: Path, bad: bytes, caplog: pytest.LogCaptureFixture, reason: str | None = None
) -> None:
    aside = [p for p in path.parent.iterdir() if p.name.startswith("store.enc.corrupt-")]
    assert len(aside) == 1
    assert aside[0].read_bytes() == bad  # kept for inspection, not destroyed
    assert not path.exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "moved it aside" in message and aside[0].name in message
    if reason:
        assert reason in message
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("case", sorted(CASES))
def test_unreadable_file_is_moved_aside(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.enc"
    store = _store(path)
    store.save(DOC)
    bad = CASES[case](path.read_bytes())
    path.write_bytes(bad)
    with caplog.at_level(logging.INFO):
        restarted = _store(path)
        assert restarted.load() == {}
    _assert_moved_aside(path, bad, caplog)
    # the daemon goes on: the next save and load work
    restarted.save(DOC)
    assert _store(path).load() == DOC


def test_reasons_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    _store(path).save(DOC)
    bad = _wrong_version(path.read_bytes())
    path.write_bytes(bad)
    with caplog.at_level(logging.ERROR):
        assert _store(path).load() == {}
    _assert_moved_aside(path, bad, caplog, "unsupported format version 99")


def test_wrong_key_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.enc"
    _store(path).save(DOC)
    good = path.read_bytes()
    other = Store(path, FileKeyProvider(tmp_path / "other.key"))
    with caplog.at_level(logging.ERROR):
        assert other.load() == {}
    _assert_moved_aside(path, good, caplog, "key that is not available")
    other.save({"fresh": True})
    assert Store(path, FileKeyProvider(tmp_path / "other.key")).load() == {"fresh": True}


def test_repeated_corruption_keeps_every_copy(tmp_path: Path) -> None:
    path = tmp_path / "store.enc"
    for _ in range(3):
        path.write_bytes(b"junk")
        assert _store(path).load() == {}
    assert len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 3
