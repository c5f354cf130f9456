"""Where the store's encryption key lives: the Secret Service, or a 0600 key file.

A provider hands out a list of 256-bit keys, the current (write) key first; later entries are
older keys that may still be needed to read a store written before the key moved. The key
itself is never logged, printed or put in an exception message.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authbroker.files import fsync_dir, write_private_atomic

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_BYTES = 32
SECRET_SERVICE = "secret-service"
FILE = "file"
DEFAULT_ATTRIBUTES = {"application": "authbroker", "purpose": "store-key"}
ITEM_LABEL = "authbroker store key"


class KeyUnavailableError(Exception):
    """A key provider cannot give out a key; the message says why (never the key)."""


class KeyProvider(Protocol):
    @property
    def key_source(self) -> str:
        """``"secret-service"`` or ``"file"``: where the current key lives."""
        ...

    def keys(self) -> list[bytes]:
        """The current key first, then older keys still accepted for reading."""
        ...

    def retire_old_keys(self) -> None:
        """Forget the older keys: the store was rewritten with the current one."""
        ...


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class FileKeyProvider:
    """The key in a file of its own, mode 0600, in a 0700 directory."""

    key_source = FILE

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> bytes | None:
        """The key in the file, or None when there is no (usable) file."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(KEY_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(data) != KEY_BYTES:
            log.error("key file %s has the wrong size; ignoring it", self.path)
            return None
        return data

    def write(self, key: bytes) -> None:
        """Create the key file atomically and durably (``authbroker.files``)."""
        write_private_atomic(self.path, key)

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            self.path.unlink()
        fsync_dir(self.path.parent)

    def keys(self) -> list[bytes]:
        with self._lock:
            if self._key is None:
                key = self.read()
                if key is None:
                    key = new_key()
                    self.write(key)
                self._key = key
            return [self._key]

    def retire_old_keys(self) -> None:
        return None


class SecretServiceKeyProvider:
    """The key as an item of the default Secret Service collection (must be unlocked).

    Never prompts and never waits longer than ``timeout`` seconds: a missing bus, a missing
    or slow service, a missing or locked default collection all raise KeyUnavailableError.
    """

    key_source = SECRET_SERVICE

    def __init__(self, attributes: dict[str, str] | None = None, timeout: float = 5.0) -> None:
        self.attributes = dict(attributes or DEFAULT_ATTRIBUTES)
        self.timeout = timeout
        self._key: bytes | None = None

    def keys(self) -> list[bytes]:
        if self._key is None:
            self._key = self.get(create=True)
        assert self._key is not None
        return [self._key]

    def retire_old_keys(self) -> None:
        return None

    def get(self, *, create: bool, import_key: bytes | None = None) -> bytes | None:
        """The stored key; if there is none, store ``import_key`` or (``create``) a new one."""
        return in_default_collection(lambda c: self._get(c, create, import_key), self.timeout)

    def _get(self, collection, create: bool, import_key: bytes | None) -> bytes | None:  # type: ignore[no-untyped-def]
        for item in collection.search_items(self.attributes):
            if item.is_locked():
                continue
            secret = item.get_secret()
            if len(secret) == KEY_BYTES:
                return bytes(secret)
            log.error("Secret Service item %r has the wrong size; replacing it", ITEM_LABEL)
        if import_key is None and not create:
            return None
        key = import_key if import_key is not None else new_key()
        collection.create_item(
            ITEM_LABEL, self.attributes, key, replace=True,
            content_type="application/octet-stream",
        )
        return key


def in_default_collection(work: Callable[[Any], T], timeout: float = 5.0) -> T:
    """``work(collection)`` on the default Secret Service collection, in a thread, within
    ``timeout`` seconds. Never prompts, never creates the collection: a missing bus, a missing
    or slow service, a missing or locked collection raise KeyUnavailableError (a message with
    names only, never a secret)."""
    import secretstorage

    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise KeyUnavailableError("DBUS_SESSION_BUS_ADDRESS is unset (no session bus)")
    try:
        conn = secretstorage.dbus_init()
    except secretstorage.SecretServiceNotAvailableException as exc:
        raise KeyUnavailableError(f"cannot connect to the session bus: {exc}") from None
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work(_unlocked_default(conn))
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    with closing(conn):
        worker = threading.Thread(target=run, name="secret-service", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            with suppress(OSError):
                conn.sock.shutdown(2)  # wakes the blocked worker
            raise KeyUnavailableError(f"the Secret Service did not answer in {timeout} s")
    error = result.get("error")
    if isinstance(error, KeyUnavailableError):
        raise error
    if isinstance(error, secretstorage.SecretStorageException):
        raise KeyUnavailableError(f"Secret Service error: {type(error).__name__}") from None
    if isinstance(error, BaseException):
        # jeepney errors (e.g. DBusErrorResponse) carry names, not secrets
        raise KeyUnavailableError(f"Secret Service error: {error}") from None
    return result["value"]  # type: ignore[no-any-return]


def _unlocked_default(conn: Any) -> Any:
    import secretstorage
    from secretstorage.exceptions import ItemNotFoundException

    if not secretstorage.check_service_availability(conn):
        raise KeyUnavailableError("no Secret Service (org.freedesktop.secrets) on the bus")
    try:
        collection = secretstorage.Collection(conn)  # the "default" alias; never created here
    except ItemNotFoundException:
        raise KeyUnavailableError("the Secret Service has no default collection") from None
    if collection.is_locked():
        raise KeyUnavailableError("the default Secret Service collection is locked")
    return collection


class DefaultKeyProvider:
    """The Secret Service when it is there and unlocked, else the key file (with a WARNING).

    ``use_secret_service=False`` forces the key file (tests, benchmarks). A key file left
    from a time without a Secret Service is moved into the Secret Service when that has no
    key yet; if both hold keys, the file's key stays readable until the store is rewritten.
    """

    def __init__(
        self,
        key_file: Path,
        *,
        use_secret_service: bool = True,
        attributes: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.file = FileKeyProvider(key_file)
        self.secret_service = SecretServiceKeyProvider(attributes, timeout)
        self.use_secret_service = use_secret_service
        self._lock = threading.Lock()
        self._keys: list[bytes] | None = None
        self._source: str | None = None

    @property
    def key_source(self) -> str:
        self.keys()
        assert self._source is not None
        return self._source

    def keys(self) -> list[bytes]:
        with self._lock:
            if self._keys is None:
                self._keys, self._source = self._resolve()
            return list(self._keys)

    def retire_old_keys(self) -> None:
        with self._lock:
            if self._source == SECRET_SERVICE and self._keys and len(self._keys) > 1:
                self.file.remove()
                self._keys = self._keys[:1]
                log.info("removed the old store key file %s", self.file.path)

    def _resolve(self) -> tuple[list[bytes], str]:
        if not self.use_secret_service:
            return self.file.keys(), FILE
        file_key = self.file.read()
        try:
            ss_key = self.secret_service.get(create=True, import_key=file_key)
        except KeyUnavailableError as exc:
            log.warning(
                "Secret Service unavailable (%s); keeping the store key in the file %s (mode 0600)",
                exc, self.file.path,
            )
            return self.file.keys(), FILE
        assert ss_key is not None
        if file_key is None:
            return [ss_key], SECRET_SERVICE
        if ss_key == file_key:
            self.file.remove()
            log.info("moved the store key from %s into the Secret Service", self.file.path)
            return [ss_key], SECRET_SERVICE
        return [ss_key, file_key], SECRET_SERVICE

