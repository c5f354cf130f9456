"""The device admin endpoints: list, disable, enable and delete devices (issue 10's "documented
way to disable or delete a device").

- ``GET /admin/devices`` → ``{"devices": [...]}`` (every device object, deleted ones included,
  with ``state`` enabled | disabled | deleted; no key material);
- ``POST /admin/devices/{id}/disable|enable|delete`` → ``{"device": {...}}``, 404 if unknown.

Each call needs ``Authorization: Bearer <token>`` with the token the authority writes at start
to ``<data_dir>/admin.json`` (``{"url": base URL, "token": ...}``, 0600, a new token every
start), compared in constant time, and comes from a loopback address; otherwise 403 (not
loopback) or 401. ``authbroker authority device ...`` (:mod:`authbroker.cli.authority`) reads
that file and calls these.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from authbroker.authority.devices import DeviceObject, DeviceRegistry
from authbroker.authority.drs import DrsError, delete_device, registry
from authbroker.authority.state import AuthorityState, authority_of
from authbroker.files import write_private_atomic

ADMIN_FILE = "admin.json"
ADMIN_PATH = "/admin/devices"
ACTIONS = ("disable", "enable", "delete")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class AdminAccess:
    """The admin token of one authority run (never logged, never in ``repr``)."""

    def __init__(self) -> None:
        self._token = secrets.token_urlsafe(32)

    def __repr__(self) -> str:
        return "AdminAccess(<token>)"

    def allows(self, header: str) -> bool:
        scheme, _, value = header.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self._token.encode())

    def write(self, data_dir: Path, base_url: str) -> Path:
        """``admin.json`` (0600) for the CLI."""
        path = data_dir / ADMIN_FILE
        write_private_atomic(path, json.dumps({"url": base_url, "token": self._token}).encode())
        return path


ADMIN_KEY = web.AppKey("device-admin", AdminAccess)


def _refuse(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description},
                             status=status, headers=_NO_STORE)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _gate(request: web.Request) -> web.Response | None:
    if not _loopback(request):
        return _refuse(403, "access_denied", "the device admin API answers loopback only")
    if not request.app[ADMIN_KEY].allows(request.headers.get("Authorization", "")):
        return _refuse(401, "invalid_token", f"send 'Authorization: Bearer <token>' with the "
                       f"token of {ADMIN_FILE} in the authority's data directory")
    return None


def _registry(st: AuthorityState) -> DeviceRegistry | web.Response:
    try:
        return registry(st)
    except DrsError as exc:
        return _refuse(exc.status, "temporarily_unavailable", exc.message)


async def list_devices(request: web.Request) -> web.Response:
    refused = _gate(request)
    if refused is not None:
        return refused
    devices = _registry(authority_of(request))
    if isinstance(devices, web.Response):
        return devices
    return web.json_response({"devices": [d.view() for d in devices.all()]},
                             headers=_NO_STORE)


async def act(request: web.Request) -> web.Response:
    refused = _gate(request)
    if refused is not None:
        return refused
    action, device_id = request.match_info["action"], request.match_info["id"]
    st = authority_of(request)
    devices = _registry(st)
    if isinstance(devices, web.Response):
        return devices
    change: dict[str, Callable[[str], DeviceObject]] = {
        "disable": devices.disable, "enable": devices.enable,
        "delete": lambda device_id: delete_device(st, device_id)}
    if action not in change:
        return _refuse(404, "not_found", f"the action must be one of {', '.join(ACTIONS)}")
    try:
        device = change[action](device_id.lower())
    except KeyError:
        return _refuse(404, "not_found", f"no device {device_id[:40]!r} (unknown or deleted)")
    return web.json_response({"device": device.view()}, headers=_NO_STORE)


def add_routes(app: web.Application) -> AdminAccess:
    """Register the routes with a fresh token; the caller writes the file once it knows the
    URL (:meth:`AdminAccess.write`)."""
    access = app[ADMIN_KEY] = AdminAccess()
    app.router.add_get(ADMIN_PATH, list_devices)
    app.router.add_post(ADMIN_PATH + "/{id}/{action}", act)
    return access
