"""Readers of one field of a wire object: the type it must have, or BrokerProtocolError.

Used by the messages' ``from_wire`` and by the codec's error objects; kept apart from
``codec`` so that ``messages`` (which ``codec`` reaches through the method table) can use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authbroker.errors import BrokerProtocolError


def read_str(obj: Mapping[str, Any], key: str, *, required: bool = False,
             default: str = "") -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise BrokerProtocolError(f"missing required field {key!r}")
        return default
    if not isinstance(value, str):
        raise BrokerProtocolError(f"field {key!r} must be a string, not {type(value).__name__}")
    if required and not value:
        raise BrokerProtocolError(f"field {key!r} must not be empty")
    return value


def read_int(obj: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise BrokerProtocolError(f"field {key!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BrokerProtocolError(f"field {key!r} must be an integer")


def read_obj(obj: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BrokerProtocolError(f"field {key!r} must be an object")
    return value


def read_bool(obj: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BrokerProtocolError(f"field {key!r} must be true or false")
    return value
