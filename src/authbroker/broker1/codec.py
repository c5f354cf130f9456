"""Broker1 texts to typed messages and back, and error objects to and from BrokerStatusError.

Errors travel as JSON objects with ``status``, ``errorCode``, ``tag``, ``context`` and
``subStatus``: inside ``brokerTokenResponse`` for token methods, at the top level otherwise
(``METHODS``' ``token_call``). Requests are parsed tolerantly, replies produced strictly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from authbroker.broker1.fields import read_int
from authbroker.broker1.methods import METHODS, AnyMethod, Method
from authbroker.broker1.names import MAX_REQUEST_BYTES, Status
from authbroker.broker1.requests import Request
from authbroker.broker1.results import Result
from authbroker.errors import BrokerProtocolError, BrokerStatusError

#: Methods an empty request text is not good enough for (elsewhere it means ``{}``): a cancel
#: must say what it is, or any stray call would end the caller's sign-ins.
_OBJECT_REQUIRED: frozenset[AnyMethod] = frozenset({Method.CANCEL_INTERACTIVE_FLOW})


def encode(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def parse_request(method: AnyMethod, request_json: str) -> Request:
    """Parse ``request_json`` for ``method``; BrokerProtocolError (safe to log) if malformed."""
    if len(request_json.encode("utf-8", "surrogatepass")) > MAX_REQUEST_BYTES:
        raise BrokerProtocolError(f"request is larger than {MAX_REQUEST_BYTES} bytes")
    if not request_json.strip() and method in _OBJECT_REQUIRED:
        raise BrokerProtocolError("request must be a JSON object")
    try:
        obj = json.loads(request_json) if request_json.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise BrokerProtocolError("request is not valid JSON") from exc
    if not isinstance(obj, dict):
        raise BrokerProtocolError("request must be a JSON object")
    request: Request = METHODS[method].request.from_wire(obj)
    return request


def parse_response(method: AnyMethod, response_json: str) -> Result:
    """Typed result of a reply; raises its BrokerStatusError, or BrokerProtocolError."""
    try:
        obj = json.loads(response_json)
    except ValueError as exc:
        raise BrokerProtocolError(f"{method} reply is not JSON") from exc
    if not isinstance(obj, dict):
        raise BrokerProtocolError(f"{method} reply is not a JSON object")
    error = find_error(obj)
    if error is not None:
        raise error
    result_type = METHODS[method].result
    if result_type is None:
        raise BrokerProtocolError(f"{method} has no typed result")
    result: Result = result_type.from_wire(obj)
    return result


def error_object(error: BrokerStatusError) -> dict[str, Any]:
    """The protocol's error object for ``error``."""
    return {
        "status": int(error.status),
        "errorCode": error.error_code,
        "tag": error.tag,
        "subStatus": error.sub_status,
        "context": error.context,
        "diagnostics": None,
    }


def error_reply(error: BrokerStatusError, method: AnyMethod) -> dict[str, Any]:
    """The reply carrying ``error``: inside ``brokerTokenResponse`` for token methods."""
    wrapped = {"error": error_object(error)}
    return {"brokerTokenResponse": wrapped} if METHODS[method].token_call else wrapped


def error_from_object(obj: Mapping[str, Any]) -> BrokerStatusError:
    """The BrokerStatusError an error object describes (a known status becomes a Status)."""
    context = obj.get("context")
    status = read_int(obj, "status", 0) or 0
    return BrokerStatusError(
        Status(status) if status in Status._value2member_map_ else status,
        context if isinstance(context, str) else "the broker reported an error",
        error_code=read_int(obj, "errorCode", 0) or 0,
        tag=read_int(obj, "tag", 0) or 0,
        sub_status=read_int(obj, "subStatus", 0) or 0,
    )


def find_error(obj: Mapping[str, Any]) -> BrokerStatusError | None:
    """The error object of a response, wherever the protocol allows it to be."""
    for holder in (obj, obj.get("brokerTokenResponse")):
        if isinstance(holder, Mapping) and isinstance(holder.get("error"), Mapping):
            return error_from_object(holder["error"])
    return None
