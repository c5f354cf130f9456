"""Run the authority in-process: ``async with serve(AuthorityConfig(...)) as running: ...``."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from authbroker.authority import admin
from authbroker.authority.app import create_app, device_urls
from authbroker.authority.devices import DeviceRegistry
from authbroker.authority.directory import Clients, Directory
from authbroker.authority.flows import Flows
from authbroker.authority.minting import Minter, SigningKey
from authbroker.authority.pki import PkiPaths, ensure_pki
from authbroker.authority.pop_resource import POP_RESOURCE_PATH
from authbroker.authority.prt_store import PRT_LIFETIME, PrtStore
from authbroker.authority.prt_store import STORE_NAME as PRT_STORE_NAME
from authbroker.authority.scopes import POP_RESOURCE_SCOPE
from authbroker.authority.state import AuthorityState


@dataclass
class AuthorityConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    users_file: Path | None = None
    clients_file: Path | None = None
    token_lifetime: int = 3600
    code_lifetime: int = 300
    device_code_lifetime: int = 900
    device_interval: int = 1
    prt_lifetime: int = PRT_LIFETIME


@dataclass
class RunningAuthority:
    authority: str
    tenant_id: str
    port: int
    pki: PkiPaths
    data_dir: Path
    state: AuthorityState = field(repr=False)

    @property
    def info(self) -> dict[str, Any]:
        """What the CLI prints as its one JSON line."""
        return {
            "authority": self.authority,
            "tenant_id": self.tenant_id,
            "ca_bundle": str(self.pki.bundle),
            "ca_cert": str(self.pki.ca_cert),
            "server_cert": str(self.pki.server_cert),
            "server_key": str(self.pki.server_key),
            "port": self.port,
            "jwks_uri": f"{self.authority}/{self.tenant_id}/discovery/v2.0/keys",
            "openid_configuration":
                f"{self.authority}/{self.tenant_id}/v2.0/.well-known/openid-configuration",
            "data_dir": str(self.data_dir),
            "pop_resource": f"{self.authority}{POP_RESOURCE_PATH}",
            "pop_resource_scope": POP_RESOURCE_SCOPE,
            **device_urls(self.authority, self.tenant_id),
            "pid": os.getpid(),
        }


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@contextlib.asynccontextmanager
async def serve(config: AuthorityConfig) -> AsyncIterator[RunningAuthority]:
    data_dir = Path(config.data_dir)
    pki = ensure_pki(data_dir, config.host)
    directory = (
        Directory.from_file(config.users_file) if config.users_file else Directory.demo()
    )
    clients = Clients.from_file(config.clients_file) if config.clients_file else Clients()
    devices = DeviceRegistry.in_data_dir(data_dir)
    state = AuthorityState(
        directory=directory, clients=clients,
        minter=Minter(SigningKey.load_or_create(data_dir / "signing-key.pem"),
                      config.token_lifetime),
        flows=Flows(config.code_lifetime, config.device_code_lifetime),
        device_interval=config.device_interval,
        devices=devices, prts=PrtStore(data_dir / PRT_STORE_NAME, lifetime=config.prt_lifetime),
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    # A device may present its certificate (DRS delete, mTLS); nobody has to.
    tls.verify_mode = ssl.CERT_OPTIONAL
    tls.load_verify_locations(cadata=devices.ca.pem().decode("ascii"))
    app = create_app(state)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    admin_file: Path | None = None
    try:
        site = web.TCPSite(runner, config.host, config.port, ssl_context=tls, backlog=512)
        await site.start()
        port = int(runner.addresses[0][1])
        state.base_url = f"https://{_url_host(config.host)}:{port}"
        admin_file = app[admin.ADMIN_KEY].write(data_dir, state.base_url)
        yield RunningAuthority(state.base_url, directory.tenant_id, port, pki, data_dir, state)
    finally:
        await runner.cleanup()
        if admin_file is not None:  # the device CLI then says "not running"
            with contextlib.suppress(OSError):
                admin_file.unlink()
