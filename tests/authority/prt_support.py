"""Helpers for the PRT tests: the real authority served in-process on a thread (so a test can
reach its state: register a device, disable it, move a PRT's clock), a registered test device,
and the client side of [MS-OAPXBC] built on ``authbroker.devicecrypto``.

The authority uses the session authority's CA (``ca_from``), so the trust already set up for
``requests`` (REQUESTS_CA_BUNDLE) covers it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker import devicecrypto
from authbroker.authority import AuthorityConfig, serve
from authbroker.authority.devices import DeviceObject, JoinRequest
from authbroker.authority.directory import User
from authbroker.authority.flows import RefreshRecord
from authbroker.authority.state import AuthorityState

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BROKER_CLIENT = "29d9ed98-a469-4536-ade2-f981bc1d605e"  # Microsoft Authentication Broker
NON_FAMILY_CLIENT = "7d2f1e0c-5b4a-4c3d-9e8f-0a1b2c3d4e5f"
USER = "user@contoso.example"
OTHER_USER = "second@contoso.example"


class LiveAuthority:
    """``serve(AuthorityConfig(data_dir, port=0))`` on a thread of its own."""

    def __init__(self, data_dir: Path, ca_from: Path | None = None, **config: Any) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if ca_from is not None:
            for name in ("ca.pem", "ca.key"):
                shutil.copy2(ca_from / name, self.data_dir / name)
        self._config = config
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self.info: dict[str, Any] = {}
        self.state: AuthorityState | None = None

    def __enter__(self) -> LiveAuthority:
        self._thread = threading.Thread(target=self._run, name="live-authority", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the authority did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(AuthorityConfig(data_dir=self.data_dir, port=0, **self._config)) as run:
            self.info, self.state = run.info, run.state
            self._ready.set()
            await self._stop.wait()

    @property
    def st(self) -> AuthorityState:
        assert self.state is not None
        return self.state

    @property
    def tenant(self) -> str:
        return str(self.info["tenant_id"])

    def url(self, path: str) -> str:
        return f"{self.info['authority']}{path}"

    def token_url(self, *, v1: bool = True) -> str:
        return self.url(f"/{self.tenant}/oauth2/{'' if v1 else 'v2.0/'}token")

    def post_token(self, v1: bool = True, **form: str) -> requests.Response:
        return requests.post(self.token_url(v1=v1), data=form, timeout=10)

    def nonce(self) -> str:
        answer = self.post_token(grant_type="srv_challenge")
        assert answer.status_code == 200, answer.text
        return str(answer.json()["Nonce"])

    def user(self, username: str = USER) -> User:
        user = self.st.directory.user(username)
        assert user is not None
        return user

    def refresh_token(self, username: str = USER, client_id: str = BROKER_CLIENT) -> str:
        """A refresh token of ``client_id`` for ``username`` (as a sign-in would leave one)."""
        return self.st.flows.issue_refresh(RefreshRecord(
            chain=self.st.flows.new_chain(), client_id=client_id, user=self.user(username),
            scope="openid profile offline_access", auth_time=1_700_000_000,
        ))

    def register(self, username: str = USER) -> TestDevice:
        """A device registered for ``username`` through the registry (as the DRS join does)."""
        device_key, transport_key = devicecrypto.new_rsa_key(), devicecrypto.new_rsa_key()
        join = JoinRequest(
            csr_der=devicecrypto.csr_der(device_key),
            transport_key=devicecrypto.transport_key_text(transport_key.public_key()),
            device_type="Linux", os_version="test", display_name="prt-test", join_type=4)
        user = self.user(username)
        device, cert = self.st.devices.register(join, user_oid=user.oid, tenant_id=self.tenant)
        return TestDevice(device, device_key, transport_key,
                          cert.public_bytes(serialization.Encoding.DER))


@dataclass
class TestDevice:
    __test__ = False  # not a test class

    obj: DeviceObject
    device_key: rsa.RSAPrivateKey
    transport_key: rsa.RSAPrivateKey
    cert_der: bytes

    @property
    def device_id(self) -> str:
        return self.obj.device_id

    def prt_jwt(self, *, key: rsa.RSAPrivateKey | None = None,
                cert_der: bytes | None = None, **claims: Any) -> str:
        body = {"client_id": BROKER_CLIENT, "scope": "openid aza", **claims}
        return devicecrypto.sign_device_jwt(body, key or self.device_key,
                                            cert_der or self.cert_der)


@dataclass(repr=False)
class Prt:
    prt: str
    session_key: bytes
    answer: dict[str, Any] = field(default_factory=dict)


def request_prt(live: LiveAuthority, device: TestDevice, rt: str | None = None,
                **claims: Any) -> requests.Response:
    """The PRT request (refresh-token variant unless ``claims`` say otherwise)."""
    claims.setdefault("request_nonce", live.nonce())
    if rt is not None:
        claims.update(grant_type="refresh_token", refresh_token=rt)
    token = device.prt_jwt(**claims)
    return live.post_token(grant_type=JWT_BEARER, request=token, client_info="1")


def establish(live: LiveAuthority, device: TestDevice) -> Prt:
    answer = request_prt(live, device, live.refresh_token())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    key = devicecrypto.unwrap_session_key(body["session_key_jwe"], device.transport_key)
    return Prt(body["refresh_token"], key, body)


def exchange_jwt(prt: Prt, nonce: str, *, session_key: bytes | None = None,
                 kdf_v2: bool = True, **claims: Any) -> str:
    body = {"client_id": NON_FAMILY_CLIENT, "scope": "openid profile offline_access",
            "grant_type": "refresh_token", "refresh_token": prt.prt, "request_nonce": nonce,
            "iss": "aad:brokerplugin", **claims}
    return devicecrypto.sign_session_jwt(body, session_key or prt.session_key, kdf_v2=kdf_v2)


def exchange(live: LiveAuthority, prt: Prt, *, v1: bool = True, **claims: Any) -> requests.Response:
    claims.setdefault("nonce", live.nonce())
    token = exchange_jwt(prt, claims.pop("nonce"), **claims)
    return live.post_token(v1=v1, grant_type=JWT_BEARER, request=token, client_info="1")


def sso_credential(prt: Prt, **claims: Any) -> str:
    body = {"refresh_token": prt.prt, "is_primary": "true", **claims}
    return devicecrypto.sign_session_jwt(body, prt.session_key)


def entra_code(answer: requests.Response) -> int:
    body = answer.json()
    assert body["error"] == "invalid_grant", body
    return int(body["error_codes"][0])


def new_guid() -> str:
    return str(uuid.uuid4())
