"""Where a registered device's two private keys live: the Secret Service, or the store.

When the store's own key is in the Secret Service (``keys.py``: the keyring is there and
unlocked), the device key and the transport key become two items of the default collection,
labelled with the device id, and the device record in the store names them instead of holding
them. Otherwise they stay in the device record, which the store seals with its key. Either way
they are never logged or shown; this module hands them out as PKCS#8 DER bytes and keeps what it
read in memory, so a later lookup does not wait on D-Bus.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from authbroker.daemon.keys import (
    SECRET_SERVICE,
    KeyProvider,
    KeyUnavailableError,
    in_default_collection,
)

log = logging.getLogger(__name__)

#: A record's ``keysIn`` values.
IN_STORE = "store"
IN_SECRET_SERVICE = SECRET_SERVICE
#: The items' attributes (plus ``device-id`` and ``key``: ``device`` or ``transport``).
ATTRIBUTES = {"application": "authbroker", "purpose": "device-key"}
KEY_NAMES = ("device", "transport")


class DeviceKeyVault:
    """The device keys' home: Secret Service items when the store key is there (``keys``)."""

    def __init__(self, keys: KeyProvider | None, timeout: float = 5.0) -> None:
        self._keys = keys
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, bytes]] = {}

    def secret_service_wanted(self) -> bool:
        """Keys go to the Secret Service: the store's key is there (so it is unlocked)."""
        if self._keys is None:
            return False
        try:
            return self._keys.key_source == SECRET_SERVICE
        except KeyUnavailableError:
            return False

    def put(self, device_id: str, ders: Mapping[str, bytes]) -> str:
        """Store the keys where they belong; return ``keysIn`` (IN_STORE: keep them in the
        record). A Secret Service that fails now leaves them in the record (with a WARNING)."""
        if not self.secret_service_wanted():
            return IN_STORE

        def create(collection: Any) -> None:
            for name in KEY_NAMES:
                collection.create_item(
                    f"authbroker device {name} key ({device_id})", _attributes(device_id, name),
                    ders[name], replace=True, content_type="application/octet-stream")

        try:
            in_default_collection(create, self.timeout)
        except KeyUnavailableError as exc:
            log.warning("device %s: the Secret Service took no keys (%s); they stay sealed in "
                        "the store", device_id, exc)
            return IN_STORE
        with self._lock:
            self._cache[device_id] = {name: ders[name] for name in KEY_NAMES}
        log.info("device %s: its keys are in the Secret Service", device_id)
        return IN_SECRET_SERVICE

    def cached(self, device_id: str) -> dict[str, bytes]:
        """The keys already read (never waits on D-Bus); KeyUnavailableError if not yet."""
        with self._lock:
            cached = self._cache.get(device_id)
        if cached is None:
            raise KeyUnavailableError("not read from the Secret Service yet")
        return dict(cached)

    def get(self, device_id: str) -> dict[str, bytes]:
        """The device's keys from the Secret Service (``device``, ``transport``).
        KeyUnavailableError: the keyring is away or locked, or has no such items."""
        with self._lock:
            cached = self._cache.get(device_id)
        if cached is not None:
            return dict(cached)

        def read(collection: Any) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for name in KEY_NAMES:
                for item in collection.search_items(_attributes(device_id, name)):
                    if not item.is_locked():
                        found[name] = bytes(item.get_secret())
                        break
            return found

        found = in_default_collection(read, self.timeout)
        missing = [name for name in KEY_NAMES if name not in found]
        if missing:
            raise KeyUnavailableError(f"the Secret Service has no {' or '.join(missing)} key "
                                      f"for device {device_id}")
        with self._lock:
            self._cache[device_id] = found
        return dict(found)

    def delete(self, device_id: str) -> None:
        """Delete the device's items (where there are any); a keyring that is away is logged."""
        with self._lock:
            self._cache.pop(device_id, None)
        if self._keys is None:
            return

        def drop(collection: Any) -> int:
            count = 0
            for name in KEY_NAMES:
                for item in collection.search_items(_attributes(device_id, name)):
                    item.delete()
                    count += 1
            return count

        try:
            count = in_default_collection(drop, self.timeout)
        except KeyUnavailableError as exc:
            if self.secret_service_wanted():
                log.warning("device %s: its Secret Service keys were not deleted (%s)",
                            device_id, exc)
            return
        if count:
            log.info("device %s: deleted its keys from the Secret Service", device_id)


def _attributes(device_id: str, name: str) -> dict[str, str]:
    return {**ATTRIBUTES, "device-id": device_id, "key": name}
