"""Where the store key lives: the Secret Service when it is usable, else a 0600 key file."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import secretstorage

from authbroker.daemon.keys import DEFAULT_ATTRIBUTES, DefaultKeyProvider
from authbroker.daemon.store import Store, decrypt_document
from fixtures.bus import PrivateBus, SecretService

TOKEN = "fake-access-token-" + secrets.token_hex(16)
DOC = {"accounts": {"a": {"username": "user@contoso.example"}}, "msal_cache": TOKEN}

# Owns org.freedesktop.secrets and never answers: a hung Secret Service.
_SILENT_SECRETS = """
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
conn = open_dbus_connection()
conn.send(message_bus.RequestName("org.freedesktop.secrets"))
while True:
    conn.receive()
"""


def _no_key_in(text: str, key: bytes) -> None:
    for form in (key.hex(), key.hex().upper(), repr(key)):
        assert form not in text
    assert TOKEN not in text


def test_key_lives_in_the_secret_service(
    secret_service: SecretService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "broker" / "store.enc"
    with caplog.at_level(logging.DEBUG):
        store = Store(path)
        store.save(DOC)
        assert store.key_source == "secret-service"
    keys = secret_service.secrets(DEFAULT_ATTRIBUTES)
    assert len(keys) == 1 and len(keys[0]) == 32
    assert decrypt_document(path.read_bytes(), keys) == DOC  # that key is the store's key
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.enc"]  # no key file
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    _no_key_in(caplog.text, keys[0])
    restarted = Store(path)
    assert restarted.load() == DOC
    assert secret_service.secrets(DEFAULT_ATTRIBUTES) == keys  # reused, not replaced


def test_key_file_when_there_is_no_session_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    path = tmp_path / "broker" / "store.enc"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        store = Store(path)
        store.save(DOC)
        assert store.key_source == "file"
    assert time.monotonic() - started < 2
    key_file = path.with_name("store.enc.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "DBUS_SESSION_BUS_ADDRESS is unset" in warnings[0] and str(key_file) in warnings[0]
    _no_key_in(caplog.text, key_file.read_bytes())
    assert Store(path).load() == DOC


def test_key_file_when_the_bus_has_no_secret_service(
    dbus_session: PrivateBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        store = Store(tmp_path / "store.enc")
        assert store.key_source == "file"
    assert time.monotonic() - started < 2
    assert "no Secret Service" in caplog.text


def test_hung_secret_service_does_not_hang_the_lookup(
    dbus_session: PrivateBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    silent = subprocess.Popen([sys.executable, "-c", _SILENT_SECRETS], env=dbus_session.env)
    try:
        dbus_session.wait_for_name("org.freedesktop.secrets")
        keys = DefaultKeyProvider(tmp_path / "store.key", timeout=1.0)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            store = Store(tmp_path / "store.enc", keys)
            store.save(DOC)
        assert time.monotonic() - started < 3
        assert store.key_source == "file"
        assert "did not answer" in caplog.text
    finally:
        silent.kill()
        silent.wait()


def test_locked_collection_falls_back_to_the_key_file(
    secret_service: SecretService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with closing(secretstorage.dbus_init()) as conn:
        secretstorage.Collection(conn, "/org/freedesktop/secrets/collection/login").lock()
        assert secretstorage.get_default_collection(conn).is_locked()
    with caplog.at_level(logging.WARNING):
        store = Store(tmp_path / "store.enc")
        store.save(DOC)
    assert store.key_source == "file"
    assert "locked" in caplog.text
    assert (tmp_path / "store.enc.key").exists()


def test_forced_key_file_ignores_the_secret_service(
    secret_service: SecretService, tmp_path: Path
) -> None:
    store = Store(tmp_path / "store.enc", use_secret_service=False)
    store.save(DOC)
    assert store.key_source == "file"
    assert (tmp_path / "store.enc.key").exists()
    assert secret_service.secrets(DEFAULT_ATTRIBUTES) == []


def test_key_file_moves_into_a_secret_service_that_appears_later(
    secret_service: SecretService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.enc"
    key_file = tmp_path / "store.enc.key"
    with monkeypatch.context() as m:
        m.delenv("DBUS_SESSION_BUS_ADDRESS")
        Store(path).save(DOC)
    file_key = key_file.read_bytes()
    store = Store(path)
    assert store.load() == DOC
    assert store.key_source == "secret-service"
    assert secret_service.secrets(DEFAULT_ATTRIBUTES) == [file_key]
    assert not key_file.exists()


def test_store_written_while_the_keyring_was_away_stays_readable(
    secret_service: SecretService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keyring key K1 exists; a run without the keyring wrote with a file key K2."""
    path = tmp_path / "store.enc"
    key_file = tmp_path / "store.enc.key"
    Store(path).save({"written": "with the keyring"})
    with monkeypatch.context() as m:
        m.delenv("DBUS_SESSION_BUS_ADDRESS")
        away = Store(path)
        assert away.load() == {}  # K1 unavailable: moved aside (logged)
        away.save(DOC)
    assert key_file.exists()
    back = Store(path)
    assert back.load() == DOC  # read with the file key
    assert back.key_source == "secret-service"
    back.save(DOC)  # rewritten with the keyring key; the file key is retired
    assert not key_file.exists()
    assert Store(path).load() == DOC
    assert os.listdir(tmp_path).count("store.enc") == 1
