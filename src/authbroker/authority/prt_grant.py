"""The PRT request ([MS-OAPXBC] §3.2.5.1.2): a JWT signed with the device key, ``x5c`` the
device certificate, authenticating the user with a refresh token or a password; the answer
carries the PRT and its session key encrypted to the device's transport key.

Order of checks, each before anything is spent: the certificate names an enabled device of
this authority (the registry: 50155/50012/135011), the JWT verifies with that certificate
(50155), the nonce is ours and fresh (50027), the client is known, then the user. The device's
registered user must be the user authenticated (a PRT is for the device's user only).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from authbroker import devicecrypto
from authbroker.authority import errors
from authbroker.authority.devices import DeviceObject
from authbroker.authority.directory import User
from authbroker.authority.minting import Grant, client_info
from authbroker.authority.prt import claim_text, nonce_checked, split_scopes
from authbroker.authority.prt_store import PrtRecord
from authbroker.authority.state import AuthorityState

log = logging.getLogger(__name__)

SESSION_KEY_BYTES = 32


def _device(st: AuthorityState, token: str) -> tuple[dict[str, Any], DeviceObject]:
    """The verified claims and the device the request's certificate names."""
    try:
        _, _, cert = devicecrypto.read_device_jwt(token)
    except devicecrypto.DeviceCryptoError as exc:
        raise errors.device_auth_failed(f"the request carries no usable certificate ({exc})") \
            from None
    device = st.devices.authenticate(cert)
    try:
        claims = devicecrypto.verify_device_jwt(token, cert)
    except devicecrypto.DeviceCryptoError:
        raise errors.device_auth_failed(
            "the request is not signed with the device certificate's key") from None
    return claims, device


def _user(st: AuthorityState, claims: dict[str, Any], client_id: str,
          device: DeviceObject) -> tuple[User, int]:
    """The user the request authenticates and the auth_time of that sign-in; a refresh token
    is spent only once every check passed."""
    grant_type = claim_text(claims, "grant_type")
    if grant_type == "password":
        user = st.directory.authenticate(claim_text(claims, "username"),
                                         claim_text(claims, "password"))
        if user is None:
            raise errors.bad_credentials()
        _same_user(user, device)
        return user, int(time.time())
    if grant_type != "refresh_token":
        raise errors.unsupported_grant(grant_type)
    refresh_token = claim_text(claims, "refresh_token")
    peeked = st.flows.peek_refresh(refresh_token)
    if peeked is not None:
        _same_user(peeked.user, device)
    record = st.flows.redeem_refresh(refresh_token, client_id,
                                     family_member=st.clients.in_family(client_id),
                                     spend=False)
    return record.user, record.auth_time


def _same_user(user: User, device: DeviceObject) -> None:
    if user.oid != device.user_oid:
        raise errors.device_auth_failed("the device is registered to another user")


def prt_request(st: AuthorityState, token: str) -> dict[str, Any]:
    """Issue a PRT for a device-signed request; returns the §2.2 JSON body."""
    claims, device = _device(st, token)
    nonce_checked(st, claims)
    client_id = claim_text(claims, "client_id")
    st.check_client(client_id)
    scopes, asks_prt = split_scopes(claim_text(claims, "scope"))
    if not asks_prt:
        raise errors.invalid_request_parameter("scope", "a PRT request must include 'aza'")
    user, auth_time = _user(st, claims, client_id, device)
    session_key = secrets.token_bytes(SESSION_KEY_BYTES)
    prt = st.prts.issue(PrtRecord(
        device_id=device.device_id, username=user.username, user_oid=user.oid,
        session_key=session_key, amr=("pwd",), auth_time=auth_time,
    ))
    record = st.prts.lookup(prt)
    assert record is not None
    now = int(time.time())
    grant = Grant(user, client_id, scopes, auth_time, device_id=device.device_id)
    lifetime = st.minter.lifetime
    log.info("issued a PRT for device %s", device.device_id)
    return {
        "token_type": "pop",
        "refresh_token": prt,
        "refresh_token_expires_in": record.expires - now,
        "session_key_jwe": devicecrypto.wrap_session_key(session_key, device.transport_key),
        "id_token": st.minter.id_token(st.base_url, grant, now),
        "client_info": client_info(user),
        "expires_in": str(lifetime),
        "ext_expires_in": str(lifetime),
        "expires_on": str(now + lifetime),
        "device_tenant_id": device.tenant_id,
    }
