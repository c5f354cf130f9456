"""The authority's shared state, handed to every request handler via the aiohttp app."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from authbroker.authority import errors
from authbroker.authority.devices import DeviceRegistry
from authbroker.authority.directory import Clients, Directory, TenantScope
from authbroker.authority.flows import Flows
from authbroker.authority.minting import Minter
from authbroker.authority.nonces import Nonces
from authbroker.authority.prt_store import PrtNonces, PrtStore


@dataclass
class AuthorityState:
    directory: Directory
    clients: Clients
    minter: Minter
    flows: Flows = field(default_factory=Flows)
    device_interval: int = 1
    nonces: Nonces = field(default_factory=Nonces)  # the PoP demo resource's challenges
    base_url: str = ""  # set once the socket is bound: https://127.0.0.1:PORT
    devices: DeviceRegistry = field(default_factory=DeviceRegistry.in_memory)  # DRS
    prts: PrtStore = field(default_factory=PrtStore)  # in memory unless given a path
    prt_nonces: PrtNonces = field(default_factory=PrtNonces)  # srv_challenge

    def tenant(self, segment: str) -> TenantScope:
        scope = self.directory.tenant_scope(segment)
        if scope is None:
            raise errors.unknown_tenant(segment[:100])
        return scope

    def check_client(self, client_id: str) -> None:
        if not self.clients.known(client_id):
            raise errors.unknown_client(client_id[:100])


STATE_KEY = web.AppKey("authority", AuthorityState)


def authority_of(request: web.Request) -> AuthorityState:
    return request.app[STATE_KEY]
