"""Device registration in the broker: register, status, unregister, and the device's state.

:class:`DeviceCalls` (the broker core's ``core.devices``) owns the one device this broker
registered (``device.py``). The device lives in the store's sealed meta row under ``"device"``
(``AccountTable.extras``, committed durably by ``persistence.py`` like the default account). Its
two private keys are two Secret Service items when the store's key is in the Secret Service
(``device_keys.py``), else sealed in that record with the store key; a record whose keys are in
a keyring that is locked or away reads as ``locked`` until they can be read (retried every
:data:`KEYS_RETRY_S` seconds, and by every status call). ``register`` runs one interactive
sign-in (``interactive.py``) for the Microsoft Authentication Broker client with the DRS scope,
discovers and joins
(``drs_client.py``), stores the device, then asks the PRT collaborator (``core.prt``) for a PRT
with the sign-in's refresh token. ``unregister`` deletes the device at the authority (TLS client
certificate) where it can, then drops the device and every PRT. ``mark`` records what the
authority said about the device (``disabled``, ``deleted``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from authbroker import broker1, devicecrypto
from authbroker.daemon import signin
from authbroker.daemon.accounts import AccountTable
from authbroker.daemon.device import JOIN_TYPE, DeviceIdentity, DeviceKeysUnavailable
from authbroker.daemon.device_keys import IN_SECRET_SERVICE, IN_STORE, DeviceKeyVault
from authbroker.daemon.device_prt import BROKER_CLIENT_ID, PrtLike, PrtStarter
from authbroker.daemon.drs_client import DrsClient
from authbroker.daemon.handler import CallContext
from authbroker.daemon.interactive import SignIns
from authbroker.daemon.keys import KeyUnavailableError
from authbroker.daemon.msal_engine import TokenEngine
from authbroker.daemon.persistence import Persistence, Run
from authbroker.errors import BrokerStatusError

log = logging.getLogger(__name__)

#: The meta row's entry the device record is kept under.
META_KEY = "device"
#: The Device Registration Service's application id: the join token's scope.
DRS_SCOPE = "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9/.default"
#: How often a device whose keys are in an unavailable Secret Service is tried again.
KEYS_RETRY_S = 30.0
#: The state a status shows while the keys cannot be read.
LOCKED = "locked"
_UNREAD = object()  # no record read yet


class DeviceCalls:
    """The broker's registered device (``identity``: None when there is none)."""

    def __init__(self, engine: TokenEngine, accounts: AccountTable, state: Persistence,
                 run: Run, sign_ins: SignIns, *,
                 prt: Callable[[], PrtLike | None] = lambda: None,
                 drs: DrsClient | None = None, vault: DeviceKeyVault | None = None) -> None:
        self.engine = engine
        self.accounts = accounts
        self._state = state
        self._run = run
        self._sign_ins = sign_ins
        self._prt = prt  # core.prt, looked up when needed (composed after this)
        self.drs = drs or DrsClient()
        self.vault = vault or DeviceKeyVault(None)
        self._record: Any = _UNREAD  # the meta entry _identity was read from
        self._identity: DeviceIdentity | None = None
        self._keys_away = ""  # why the record's keys cannot be read ("": they can)
        self._keys_tried = 0.0  # when settle() last tried the Secret Service
        #: Asks for the device's PRT at registration and whenever it has none.
        self.prts = PrtStarter(engine, run, prt, lambda: self.identity)
        self._lock = asyncio.Lock()  # one register/unregister at a time

    # -- the device ---------------------------------------------------------------------------

    @property
    def identity(self) -> DeviceIdentity | None:
        """The registered device as the store holds it (None: none, or unreadable)."""
        record = self.accounts.extras.get(META_KEY)
        if record is not self._record:
            self._record, self._identity, self._keys_away = record, None, ""
            if record is not None:
                try:  # only keys already read: this never waits on D-Bus (settle() does)
                    self._identity = DeviceIdentity.from_record(record, self.vault.cached)
                except DeviceKeysUnavailable as exc:
                    self._keys_away = str(exc)
                    self._settle_later()
                except ValueError as exc:  # never the record's bytes: the field's name only
                    log.error("the store's device record is unreadable (%s); the broker acts "
                              "as not registered (register again to replace it)", exc)
        return self._identity

    async def settle(self, *, now_: bool = False) -> None:
        """Read the device's keys from the Secret Service (in the executor), and move keys
        kept in the store into it when it has become available. ``now_``: even if it was
        tried less than :data:`KEYS_RETRY_S` seconds ago (a status call)."""
        device, record = self.identity, self._record
        if device is None and self._keys_away:
            if not now_ and time.monotonic() - self._keys_tried < KEYS_RETRY_S:
                return
            self._keys_tried = time.monotonic()
            peek = DeviceIdentity.peek(record)
            try:
                await self._run(self.vault.get, str(peek.get("deviceId", "")))
            except KeyUnavailableError as exc:
                log.warning("device %s: its keys are in the Secret Service, which cannot give "
                            "them (%s): the device is unusable until it is unlocked",
                            peek.get("deviceId"), exc)
                return
            self._record = _UNREAD  # read it again, with the keys now at hand
            if self.identity is not None:
                log.info("device %s: its keys were read from the Secret Service",
                         peek.get("deviceId"))
        elif device is not None and device.keys_in == IN_STORE \
                and await self._run(self.vault.secret_service_wanted):
            keys_in = await self._run(self.vault.put, device.device_id, device.key_ders())
            if keys_in == IN_SECRET_SERVICE:
                self._keep(dataclasses.replace(device, keys_in=keys_in))
                await self._state.flush(durable=True)
                log.info("device %s: moved its keys from the store into the Secret Service",
                         device.device_id)

    def _settle_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if time.monotonic() - self._keys_tried >= KEYS_RETRY_S:
            _background(loop.create_task(self.settle()))

    def _keep(self, device: DeviceIdentity | None) -> None:
        record = None if device is None else device.to_record()
        if record is None:
            self.accounts.extras.pop(META_KEY, None)
        else:
            self.accounts.extras[META_KEY] = record
        self._record, self._identity, self._keys_away = record, device, ""

    def mark(self, state: str) -> None:
        """Record what the authority said about the device (``registered``, ``disabled``,
        ``deleted``); committed with the next flush (one is started when on the event loop)."""
        device = self.identity
        if device is None or device.state == state:
            return
        self._keep(device.with_state(state))
        log.warning("device %s is now %s", device.device_id, state)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        _background(loop.create_task(self._state.flush(durable=True)))

    # -- status -------------------------------------------------------------------------------

    def status(self) -> broker1.DeviceStatus | None:
        """The device as ``GetDeviceStatus`` shows it (never key material), None if none."""
        device = self.identity
        if device is None:
            return self._locked_status()
        prt = self._prt_state(device)
        return broker1.DeviceStatus(
            device_id=device.device_id, tenant_id=device.tenant_id, authority=device.authority,
            state=device.state, certificate_not_after=device.cert_not_after,
            join_type=JOIN_TYPE, home_account_id=device.home_account_id,
            registered_at=device.registered_at, prt=str(prt.get("prt") or "none"),
            prt_expires_on=_epoch(prt.get("expiresOn")),
            prt_renewed_at=_epoch(prt.get("renewedAt")))

    def _locked_status(self) -> broker1.DeviceStatus | None:
        """A device whose keys are in a Secret Service that is locked or away, else None."""
        if not self._keys_away:
            return None
        peek = DeviceIdentity.peek(self._record)
        return broker1.DeviceStatus(
            device_id=str(peek.get("deviceId", "")), tenant_id=str(peek.get("tenantId", "")),
            authority=str(peek.get("authority", "")), state=LOCKED,
            certificate_not_after=_epoch(peek.get("certificateNotAfter")) or 0, join_type=JOIN_TYPE,
            home_account_id=str(peek.get("homeAccountId", "")),
            registered_at=_epoch(peek.get("registeredAt")) or 0, prt="unavailable",
            prt_expires_on=None, prt_renewed_at=None)

    def _prt_state(self, device: DeviceIdentity) -> dict[str, Any]:
        prt = self._prt()
        if prt is None:
            return {}
        try:
            return dict(prt.state(device.home_account_id))
        except Exception as exc:  # status must answer whatever the PRT side does
            log.error("the PRT state is unreadable: %s", type(exc).__name__)
            return {}

    # -- register -----------------------------------------------------------------------------

    async def register(self, request: broker1.RegisterDeviceRequest,
                       ctx: CallContext) -> broker1.DeviceStatus:
        """One sign-in, discovery, two new keys, the join, the device stored, then a PRT."""
        async with self._lock:
            auth = self._sign_in_request(request)
            ui_mode = signin.DEVICE_CODE if request.use_device_code else None
            result = await self._sign_ins.sign_in(auth, ctx, ui_mode=ui_mode)
            if result.account is None:
                raise BrokerStatusError(broker1.Status.UNEXPECTED,
                                        "the registration's sign-in named no account",
                                        tag="device.register.account")
            hid = result.account.home_account_id
            target = self.engine.target(auth)
            tenant = request.tenant or result.account.realm
            found = await self._run(self.drs.discover, target.authority, tenant)
            device_key, transport_key = await self._run(_two_keys)
            joined = await self._run(self.drs.join, found, result.access_token, device_key,
                                     transport_key, name=request.device_name)
            device = DeviceIdentity(
                device_id=joined.device_id, tenant_id=found.tenant_id,
                authority=f"{_origin(target.authority)}/{found.tenant_id}",
                home_account_id=hid, cert_der=joined.cert_der, device_key=device_key,
                transport_key=transport_key, join_endpoint=found.join_endpoint,
                token_endpoint=found.token_endpoint, registered_at=now(),
                cert_not_after=joined.not_after)
            keys_in = await self._run(self.vault.put, device.device_id, device.key_ders())
            await self._replace(dataclasses.replace(device, keys_in=keys_in))
            device = self.identity or device
            log.info("registered device %s in tenant %s for %s (%s)", device.device_id,
                     device.tenant_id, hid, ctx.correlation_id)
            await self.prts.establish(device)
            status = self.status()
            assert status is not None
            return status

    def _sign_in_request(self, request: broker1.RegisterDeviceRequest) -> broker1.AuthParameters:
        """The registration's sign-in: the broker client, the DRS scope, at the authority."""
        authority = request.authority
        if request.tenant:
            target = self.engine.target(broker1.AuthParameters(BROKER_CLIENT_ID, (),
                                                               authority=authority))
            authority = f"{_origin(target.authority)}/{request.tenant}"
        account = None
        if request.home_account_id:
            if request.home_account_id not in self.accounts:
                raise BrokerStatusError(broker1.Status.ACCOUNT_NOT_FOUND,
                                        f"account {request.home_account_id} is not signed in",
                                        tag="device.register.account")
            account = self.accounts.account(request.home_account_id)
        return broker1.AuthParameters(
            client_id=BROKER_CLIENT_ID, requested_scopes=(DRS_SCOPE, "offline_access"),
            authority=authority, account=account,
            username=account.username if account else "", is_sign_in=True,
            authorization_type=broker1.AuthorizationType.INTERACTIVE)

    async def _replace(self, device: DeviceIdentity | None) -> None:
        """The stored device becomes ``device`` (None: none); every PRT of the one before
        goes; committed durably before the caller hears of it."""
        old = self.identity
        old_peek = DeviceIdentity.peek(self._record) if self._keys_away else {}
        if old is not None:
            await self._forget_prts()
            if device is not None:
                log.info("device %s replaced by a new registration (it stays at the "
                         "authority: delete it there with its admin tools)", old.device_id)
        self._keep(device)
        await self._state.flush(durable=True)
        gone = old.device_id if old is not None and old.keys_in == IN_SECRET_SERVICE else \
            str(old_peek.get("deviceId") or "")
        if gone and (device is None or device.device_id != gone):
            await self._run(self.vault.delete, gone)

    # -- unregister ---------------------------------------------------------------------------

    async def unregister(self, local_only: bool = False) -> broker1.UnregisterDeviceResult:
        """Delete the device at the authority (unless ``local_only``; where it can), then its
        keys, certificate and every PRT here."""
        await self.settle(now_=True)
        async with self._lock:
            device = self.identity
            if device is None and self._keys_away:
                if not local_only:
                    raise BrokerStatusError(
                        broker1.Status.KEY_NOT_FOUND,
                        "the device's keys are in the Secret Service, which is locked or "
                        "unavailable: unlock it and try again (or unregister --local-only to "
                        "forget the device here only)", tag="device.unregister.keys")
                await self._replace(None)
                return broker1.UnregisterDeviceResult(False, "localOnly")
            if device is None:
                if self.accounts.extras.get(META_KEY) is not None:  # unreadable: drop it
                    await self._replace(None)
                    return broker1.UnregisterDeviceResult(False, "the device record was "
                                                          "unreadable; removed")
                return broker1.UnregisterDeviceResult(False, "no device is registered")
            deleted, reason = False, "localOnly" if local_only else ""
            if not local_only:
                try:
                    await self._run(self.drs.delete, device)
                    deleted = True
                except BrokerStatusError as exc:
                    reason = exc.context
                    log.warning("device %s: not deleted at the authority: %s",
                                device.device_id, exc.context)
            await self._replace(None)
            log.info("device %s unregistered (%s at the authority)", device.device_id,
                     "deleted" if deleted else "not deleted")
            return broker1.UnregisterDeviceResult(deleted, reason)

    async def _forget_prts(self) -> None:
        prt = self._prt()
        if prt is not None:
            await prt.forget()


def _two_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return devicecrypto.new_rsa_key(), devicecrypto.new_rsa_key()


def _origin(authority: str) -> str:
    parts = urlsplit(authority)
    return f"{parts.scheme}://{parts.netloc}"


def _epoch(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


_tasks: set[asyncio.Task[Any]] = set()


def _background(task: asyncio.Task[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def now() -> int:
    return int(time.time())
