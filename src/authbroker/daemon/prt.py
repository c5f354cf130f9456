"""The PRT client ([MS-OAPXBC]): nonce, PRT request, exchange, renewal, the SSO credential.

The protocol half is sans-I/O (forms out, answers in, ``devicecrypto`` for every signature and
every decryption): :func:`prt_request_form` (a JWT signed with the device key, ``x5c`` the
device certificate, authenticating the user with a refresh token) and :func:`prt_from_answer`
(the PRT and its session key, unwrapped with the transport key); :func:`exchange_form` (a JWT
signed with a key derived from the session key, KDFv2 when the authority advertises
``kdf_ver2``) and :func:`exchange_answer` (the encrypted token response); :func:`renewed`
(an exchange with ``aza`` answers a new PRT, the session key is kept); :func:`sso_credential`
(the ``x-ms-RefreshTokenCredential`` JWT). :class:`PrtClient` sends them with ``requests``
(the CA trust msal's apps use: ``REQUESTS_CA_BUNDLE``, timeouts always set); every one of its
methods blocks, so the broker runs them in its executor.

A :class:`PrtState` is kept sealed in its account's token snapshot (``partitions.PRT``,
:meth:`PrtState.to_record`). Neither the PRT nor its session key ever appear in a ``repr``,
a log line or an exception: a refusal is a :class:`PrtError` naming the AADSTS code only.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from authbroker import devicecrypto, entra
from authbroker.daemon.device import DeviceIdentity

#: The Microsoft Authentication Broker: the client of the PRT request and of renewals.
BROKER_CLIENT_ID = "29d9ed98-a469-4536-ade2-f981bc1d605e"
#: What the PRT request and a renewal ask for (``aza``: a PRT).
PRT_SCOPE = "openid aza"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SRV_CHALLENGE = "srv_challenge"
#: The browser SSO cookie's (and header's) name.
COOKIE_NAME = "x-ms-RefreshTokenCredential"
#: (connect, read) seconds for every request to the authority.
TIMEOUT = (10.0, 30.0)
#: A grant nonce is reused this long (the authority keeps them 300 s).
NONCE_REUSE_S = 120.0
#: What an AADSTS code in a refusal means for the PRT: the device's new state, or "expired".
REFUSALS = {135011: "disabled", 50155: "deleted", 70008: "expired"}
#: AADSTS50027: the nonce was stale (a cached one is dropped and the request sent again).
STALE_NONCE = 50027
_RECORD_VERSION = 1


@dataclass(repr=False)
class PrtState:
    """A PRT, its session key and when it was issued, expires and was last renewed."""

    prt: str
    session_key: bytes
    device_id: str
    home_account_id: str
    issued_at: int
    expires_at: int
    renewed_at: int
    kdf_v2: bool

    def __repr__(self) -> str:
        return (f"PrtState(device_id={self.device_id!r}, home_account_id="
                f"{self.home_account_id!r}, expires_at={self.expires_at})")

    __str__ = __repr__

    def live(self, now: float | None = None) -> bool:
        return self.expires_at > (time.time() if now is None else now)

    def to_record(self) -> str:
        """The text kept (sealed) in the account's snapshot: it holds secrets, never show it."""
        return json.dumps({
            "v": _RECORD_VERSION, "prt": self.prt,
            "sessionKey": base64.b64encode(self.session_key).decode("ascii"),
            "deviceId": self.device_id, "homeAccountId": self.home_account_id,
            "issuedAt": self.issued_at, "expiresAt": self.expires_at,
            "renewedAt": self.renewed_at, "kdfV2": self.kdf_v2,
        }, separators=(",", ":"))

    @classmethod
    def from_record(cls, text: str) -> PrtState:
        """ValueError (naming no secret) if ``text`` is not a PRT record."""
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("v") != _RECORD_VERSION:
                raise ValueError
            state = cls(
                prt=str(record["prt"]),
                session_key=base64.b64decode(record["sessionKey"], validate=True),
                device_id=str(record["deviceId"]), home_account_id=str(record["homeAccountId"]),
                issued_at=int(record["issuedAt"]), expires_at=int(record["expiresAt"]),
                renewed_at=int(record["renewedAt"]), kdf_v2=bool(record["kdfV2"]))
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise ValueError("the saved PRT record is unreadable") from None
        if not state.prt or len(state.session_key) != devicecrypto.SESSION_KEY_BYTES:
            raise ValueError("the saved PRT record is unreadable")
        return state

    def status(self, now: float | None = None) -> dict[str, Any]:
        """``core.prt.state``'s fields (no secret)."""
        return {"prt": "active" if self.live(now) else "expired", "expiresOn": self.expires_at,
                "renewedAt": self.renewed_at}


class PrtError(Exception):
    """The authority refused a PRT request or exchange (``error``, AADSTS ``code``), or its
    answer was unusable. The message never holds a token or a key."""

    def __init__(self, error: str, code: int = 0, description: str = "",
                 body: Mapping[str, Any] | None = None) -> None:
        self.error, self.code, self.description = error, code, description
        self.body = dict(body or {"error": error, "error_description": description})
        super().__init__(f"{error} (AADSTS{code})" if code else error)

    @property
    def refusal(self) -> str | None:
        """What the refusal means for the PRT (:data:`REFUSALS`), None for other errors."""
        return REFUSALS.get(self.code)


def token_endpoint(device: DeviceIdentity) -> str:
    """The v1 token endpoint the PRT grants go to (the device's, else its authority's)."""
    return device.token_endpoint or f"{device.authority.rstrip('/')}/oauth2/token"


def openid_configuration_url(authority: str) -> str:
    return f"{authority.rstrip('/')}/v2.0/.well-known/openid-configuration"


def sso_nonce(url: str) -> str | None:
    """The ``sso_nonce`` query parameter of ``url`` (a nonce challenge's answer), if any."""
    values = parse_qs(urlsplit(url).query).get("sso_nonce") if url else None
    return values[0] if values and values[0] else None


# -- the forms (sans-I/O) -----------------------------------------------------------------------

def nonce_form() -> dict[str, str]:
    return {"grant_type": SRV_CHALLENGE}


def nonce_from(body: Mapping[str, Any]) -> str:
    nonce = body.get("Nonce")
    if not isinstance(nonce, str) or not nonce:
        raise PrtError("invalid_response", description="the nonce answer has no Nonce")
    return nonce


def prt_request_form(device: DeviceIdentity, refresh_token: str, client_id: str,
                     nonce: str) -> dict[str, str]:
    """§2.2: the PRT request, signed with the device key (``x5c`` its certificate)."""
    claims = {"client_id": client_id, "scope": PRT_SCOPE, "request_nonce": nonce,
              "grant_type": "refresh_token", "refresh_token": refresh_token}
    request = devicecrypto.sign_device_jwt(claims, device.device_key, device.cert_der)
    return {"grant_type": JWT_BEARER, "request": request, "client_info": "1",
            "windows_api_version": "2.0"}


def _seconds(value: Any, default: int) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def prt_from_answer(body: Mapping[str, Any], device: DeviceIdentity, kdf_v2: bool,
                    now: int | None = None) -> PrtState:
    """The PRT and its session key (unwrapped with the device's transport key)."""
    now = int(time.time()) if now is None else now
    prt, jwe = body.get("refresh_token"), body.get("session_key_jwe")
    if not isinstance(prt, str) or not prt or not isinstance(jwe, str) or not jwe:
        raise PrtError("invalid_response", description="the PRT answer has no refresh_token "
                       "or session_key_jwe")
    try:
        session_key = devicecrypto.unwrap_session_key(jwe, device.transport_key)
    except devicecrypto.DeviceCryptoError as exc:
        raise PrtError("invalid_response", description=str(exc)) from None
    lifetime = _seconds(body.get("refresh_token_expires_in"), 14 * 86400)
    return PrtState(prt=prt, session_key=session_key, device_id=device.device_id,
                    home_account_id=device.home_account_id, issued_at=now,
                    expires_at=now + lifetime, renewed_at=now, kdf_v2=kdf_v2)


def exchange_form(state: PrtState, client_id: str, scope: str, nonce: str,
                  extra_claims: Mapping[str, Any] | None = None,
                  now: int | None = None) -> dict[str, str]:
    """§2.4: the PRT exchange for ``client_id`` and ``scope`` (``extra_claims``: ``claims``,
    ``token_type``/``req_cnf`` for PoP), signed with a key derived from the session key."""
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"client_id": client_id, "scope": scope,
                              "grant_type": "refresh_token", "refresh_token": state.prt,
                              "request_nonce": nonce, "iss": "aad:brokerplugin",
                              "iat": now, "exp": now + 300}
    claims.update(extra_claims or {})
    request = devicecrypto.sign_session_jwt(claims, state.session_key, kdf_v2=state.kdf_v2)
    return {"grant_type": JWT_BEARER, "request": request, "client_info": "1",
            "windows_api_version": "2.2"}


def exchange_answer(text: str, state: PrtState) -> dict[str, Any]:
    """The exchange's token response (a JWE decrypted with the session key, or plain JSON)."""
    try:
        body = devicecrypto.decrypt_response(text, state.session_key)
    except devicecrypto.DeviceCryptoError as exc:
        raise PrtError("invalid_response", description=str(exc)) from None
    if "error" in body:
        raise error_of(body)
    return body


def renewed(state: PrtState, body: Mapping[str, Any], now: int | None = None) -> PrtState:
    """The state after a renewal's answer: the new PRT, its lifetime restarted, same key."""
    now = int(time.time()) if now is None else now
    prt = body.get("refresh_token")
    if not isinstance(prt, str) or not prt:
        raise PrtError("invalid_response", description="the renewal answer has no new PRT")
    lifetime = _seconds(body.get("refresh_token_expires_in"), state.expires_at - state.issued_at)
    return PrtState(prt=prt, session_key=state.session_key, device_id=state.device_id,
                    home_account_id=state.home_account_id, issued_at=state.issued_at,
                    expires_at=now + lifetime, renewed_at=now, kdf_v2=state.kdf_v2)


def sso_credential(state: PrtState, nonce: str, now: int | None = None) -> str:
    """§2.6: the ``x-ms-RefreshTokenCredential`` JWT (``request_nonce`` = ``nonce``)."""
    now = int(time.time()) if now is None else now
    claims = {"refresh_token": state.prt, "request_nonce": nonce, "iat": now,
              "is_primary": "true", "windows_api_version": "2.0.1",
              "x_client_platform": "linux"}
    return devicecrypto.sign_session_jwt(claims, state.session_key, kdf_v2=state.kdf_v2)


def error_of(body: Mapping[str, Any]) -> PrtError:
    """The PrtError an OAuth error body describes (``error_codes``, else AADSTS in the text)."""
    description = str(body.get("error_description") or "")
    codes = body.get("error_codes")
    code = codes[0] if isinstance(codes, list) and codes and isinstance(codes[0], int) \
        else entra.aadsts_code(description)
    return PrtError(str(body.get("error") or "invalid_grant"), code,
                    description.splitlines()[0][:300] if description else "", body)


# -- over HTTP (blocking: the broker's executor) ------------------------------------------------

class PrtClient:
    """The PRT protocol over HTTP. Thread-safe; every method blocks."""

    def __init__(self, session: requests.Session | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.posts = 0  # requests sent to token endpoints (measurements, tests)
        self._kdf: dict[str, bool] = {}
        self._nonces: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def _post(self, url: str, form: Mapping[str, str]) -> requests.Response:
        with self._lock:
            self.posts += 1
        return self.session.post(url, data=dict(form), timeout=self.timeout,
                                 headers={"Accept": "application/json"})

    def _json(self, answer: requests.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PrtError("invalid_response",
                           description=f"the authority answered HTTP {answer.status_code} "
                           "without a JSON object")
        if "error" in body or answer.status_code >= 400:
            raise error_of(body)
        return body

    def kdf_v2(self, authority: str) -> bool:
        """Whether the authority's OpenID configuration advertises ``kdf_ver2``."""
        with self._lock:
            known = self._kdf.get(authority)
        if known is not None:
            return known
        answer = self.session.get(openid_configuration_url(authority), timeout=self.timeout)
        try:
            capabilities = answer.json().get("capabilities") if answer.ok else None
        except (ValueError, AttributeError):
            capabilities = None
        found = isinstance(capabilities, list) and "kdf_ver2" in capabilities
        with self._lock:
            self._kdf[authority] = found
        return found

    def nonce(self, endpoint: str, *, fresh: bool = False) -> str:
        """A ``srv_challenge`` nonce; one is reused for grants for :data:`NONCE_REUSE_S`
        unless ``fresh`` (the SSO cookie's are single-use)."""
        now = time.monotonic()
        if not fresh:
            with self._lock:
                cached = self._nonces.get(endpoint)
            if cached is not None and cached[1] > now:
                return cached[0]
        nonce = nonce_from(self._json(self._post(endpoint, nonce_form())))
        if not fresh:
            with self._lock:
                self._nonces[endpoint] = (nonce, now + NONCE_REUSE_S)
        return nonce

    def _forget_nonce(self, endpoint: str) -> None:
        with self._lock:
            self._nonces.pop(endpoint, None)

    def request_prt(self, device: DeviceIdentity, refresh_token: str,
                    client_id: str) -> PrtState:
        """§2.2 with the registration's refresh token of ``client_id``."""
        kdf_v2 = self.kdf_v2(device.authority)
        endpoint = token_endpoint(device)
        nonce = self.nonce(endpoint, fresh=True)
        form = prt_request_form(device, refresh_token, client_id, nonce)
        return prt_from_answer(self._json(self._post(endpoint, form)), device, kdf_v2)

    def exchange(self, state: PrtState, endpoint: str, client_id: str, scope: str,
                 extra_claims: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """§2.4: a token response for ``client_id`` (a stale cached nonce: once more)."""
        for attempt in (0, 1):
            nonce = self.nonce(endpoint)
            answer = self._post(endpoint, exchange_form(state, client_id, scope, nonce,
                                                        extra_claims))
            try:
                if answer.status_code >= 400 or answer.text.lstrip().startswith("{\"error"):
                    self._json(answer)  # raises the refusal
                return exchange_answer(answer.text, state)
            except PrtError as exc:
                if exc.code != STALE_NONCE or attempt:
                    raise
                self._forget_nonce(endpoint)
        raise AssertionError("unreachable")  # pragma: no cover

    def renew(self, state: PrtState, endpoint: str) -> PrtState:
        """§2.5: a new PRT (an exchange with ``aza`` for the broker client)."""
        return renewed(state, self.exchange(state, endpoint, BROKER_CLIENT_ID, PRT_SCOPE))

    def sso_cookie(self, state: PrtState, endpoint: str, nonce: str | None = None) -> str:
        """The SSO credential with ``nonce`` (a challenge's ``sso_nonce``) or a fresh one."""
        return sso_credential(state, nonce or self.nonce(endpoint, fresh=True))
