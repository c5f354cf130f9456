"""The single-file store (format 1): one encrypted JSON document, read once to be converted.

The daemon keeps its state in the record store (``records.py``, one row per account, through
``persistence.AccountStore``) since document version 3; a file of this format found at the
store's path is read with :class:`Store` and converted. Writing it stays for tests and tools.

File layout (format version 1), all integers big-endian::

    magic   8 bytes   b"ABSTORE\\0"
    version 2 bytes   1
    key id  8 bytes   HMAC-SHA256(key, "authbroker store key id")[:8]
    nonce  12 bytes   random per write
    ciphertext + 16-byte GCM tag of the UTF-8 JSON document

AES-256-GCM with the 30-byte header as associated data, so the header cannot be altered
without the file failing to decrypt. Writes are atomic (``authbroker.files``: temporary file in
the same directory, fsync, rename, fsync of the directory), files are 0600. A file that cannot
be read back (truncated, damaged, foreign, a version this code does not know, a key we do not
have) is renamed ``<name>.corrupt-<UTC timestamp>`` with a logged error, and ``load()`` returns an
empty document: the daemon keeps running. Nothing secret is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authbroker.config import state_dir
from authbroker.daemon.keys import DefaultKeyProvider, KeyProvider
from authbroker.files import fsync_dir, temp_owner_pid, write_private_atomic

log = logging.getLogger(__name__)

MAGIC = b"ABSTORE\0"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sH8s12s")
_TAG_BYTES = 16
_KEY_ID_LABEL = b"authbroker store key id"

Document = dict[str, Any]


class StoreFormatError(Exception):
    """The store file cannot be read back; the message names why, never its contents."""


def default_store_path() -> Path:
    return state_dir() / "broker" / "store.enc"


def key_id(key: bytes) -> bytes:
    """A short, non-secret fingerprint of a key, kept in the header to pick the right key."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:8]


def encrypt_document(doc: Document, key: bytes) -> bytes:
    plaintext = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, key_id(key), secrets.token_bytes(12))
    return header + AESGCM(key).encrypt(header[-12:], plaintext, header)


def _decode_v1(data: bytes, keys: list[bytes]) -> Document:
    header = data[: _HEADER.size]
    _magic, _version, kid, nonce = _HEADER.unpack(header)
    key = next((k for k in keys if hmac.compare_digest(key_id(k), kid)), None)
    if key is None:
        raise StoreFormatError("encrypted with a key that is not available")
    try:
        plaintext = AESGCM(key).decrypt(nonce, data[_HEADER.size :], header)
    except InvalidTag:
        raise StoreFormatError("authentication failed (file damaged or altered)") from None
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StoreFormatError("decrypted contents are not valid JSON") from None
    if not isinstance(doc, dict):
        raise StoreFormatError("decrypted contents are not a JSON object")
    return doc


# One reader per known format version; a new version adds a reader (migrating on read) and
# bumps FORMAT_VERSION, so saving rewrites the file in the newest format.
_READERS: dict[int, Callable[[bytes, list[bytes]], Document]] = {1: _decode_v1}


def read_header(data: bytes) -> tuple[int, bytes]:
    """A store file's format version and key id, from its header only (nothing decrypted)."""
    if len(data) < _HEADER.size + _TAG_BYTES:
        raise StoreFormatError(f"truncated ({len(data)} bytes)")
    magic, version, kid, _nonce = _HEADER.unpack(data[: _HEADER.size])
    if magic != MAGIC:
        raise StoreFormatError("not an authbroker store (bad magic)")
    return version, kid


def decrypt_document(data: bytes, keys: list[bytes]) -> Document:
    version, _kid = read_header(data)
    reader = _READERS.get(version)
    if reader is None:
        raise StoreFormatError(f"unsupported format version {version}")
    return reader(data, keys)


class Store:
    """Load and save the daemon's document; safe to call from several threads."""

    def __init__(
        self,
        path: Path,
        keys: KeyProvider | None = None,
        *,
        use_secret_service: bool = True,
    ) -> None:
        self.path = Path(path)
        self.keys: KeyProvider = keys or DefaultKeyProvider(
            self.path.with_name(self.path.name + ".key"),
            use_secret_service=use_secret_service,
        )
        self._lock = threading.Lock()

    @property
    def key_source(self) -> str:
        """Where the key lives: ``"secret-service"`` or ``"file"``."""
        return self.keys.key_source

    def load(self) -> Document:
        """The saved document; ``{}`` when there is none or it was unreadable (moved aside)."""
        with self._lock:
            self._remove_stale_temp_files()
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return {}
            except OSError as exc:
                log.error("cannot read the store %s (%s); starting empty", self.path, exc.strerror)
                return {}
            try:
                return decrypt_document(data, self.keys.keys())
            except StoreFormatError as exc:
                self._move_aside(str(exc))
                return {}

    def save(self, doc: Document) -> None:
        """Replace the saved document atomically."""
        with self._lock:
            keys = self.keys.keys()
            write_private_atomic(self.path, encrypt_document(doc, keys[0]))
            if len(keys) > 1:
                self.keys.retire_old_keys()

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while dest.exists():
            dest = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.rename(self.path, dest)
            fsync_dir(self.path.parent)
        except OSError as exc:
            log.error(
                "the store %s is unreadable (%s) and could not be moved aside (%s); "
                "starting with an empty store", self.path, reason, exc.strerror,
            )
            return
        log.error(
            "the store %s is unreadable (%s); moved it aside to %s and starting with an "
            "empty store", self.path, reason, dest.name,
        )

    def _remove_stale_temp_files(self) -> None:
        """Temporary files left by a writer that died (e.g. kill -9) before its rename."""
        with suppress(OSError):
            for entry in self.path.parent.iterdir():
                pid = temp_owner_pid(entry, self.path.name)
                if pid is not None and not _pid_alive(pid):
                    with suppress(OSError):
                        entry.unlink()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
