"""Device identity (issue 10): a silent token for a NEW client id served from the Primary
Refresh Token (one exchange at the authority) against a refresh-token redemption for a client
that already has its own refresh token (a forced refresh), in the same run, alternating blocks.

Two levels, each against a real local authority over TLS:

* protocol, in this process: the device joined with the daemon's ``DrsClient``, a PRT from the
  device-signed PRT request, then ``authbroker.devicecrypto`` + ``requests``: one HS256
  session-signed exchange for a fresh client id, its JWE answer decrypted (the nonce fetched
  once a block: nonces are reusable while they live) against msal's
  ``acquire_token_silent(force_refresh=True)`` for Azure CLI's client id in this process;
* through the daemon on a private dbus-daemon: the account
  signed in through Azure CLI's client id, the device registered (``RegisterDevice``); then
  ``acquireTokenSilently`` for a fresh client id each call (served from the PRT, audit
  ``served: prt``) against ``acquireTokenSilently`` with ``forceRefresh`` for Azure CLI
  (``served: refresh``). To explain the gap, the same new-client call before the registration
  (the daemon's msal lookup that finds nothing, answered with interaction-required): the
  PRT-served call pays it before its exchange.

Goal: the PRT-served silent token ≤ 1.5× the refresh-token redemption.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import requests

from authbroker import broker1, devicecrypto
from authbroker.client import BrokerClient
from authbroker.daemon.drs_client import DrsClient  # the daemon's join, reused
from authbroker.devkit.useragent import DEFAULT_PASSWORD, DEFAULT_USERNAME, device_login
from authbroker.errors import BrokerStatusError
from benchmarks import rig
from benchmarks.harness import Row, measure, median_ms, report

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
BROKER_CLIENT = "29d9ed98-a469-4536-ade2-f981bc1d605e"  # Microsoft Authentication Broker
DRS_SCOPE = "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9/.default"
SCOPE = "https://storage.azure.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
BLOCKS, CALLS_PER_BLOCK = 5, 20
GOAL = 1.5


# --- protocol level --------------------------------------------------------------------------

def _signed_in(auth: rig.Authority, session: requests.Session, client_id: str,
               scope: str) -> tuple[msal.PublicClientApplication, dict[str, Any]]:
    """An msal app of this process for ``client_id``, signed in by device code (the demo user)."""
    app = msal.PublicClientApplication(client_id, authority=f"{auth.authority}/{auth.tenant_id}",
                                       instance_discovery=False, http_client=session)
    flow = app.initiate_device_flow(scopes=[scope])
    device_login(flow["verification_uri"], flow["user_code"], DEFAULT_USERNAME,
                 DEFAULT_PASSWORD, session=requests.Session())
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise RuntimeError(f"the device-code sign-in failed: {result.get('error')}")
    return app, result


class Device:
    """A device registered at the authority by hand, its PRT and session key (in memory), and
    a separate sign-in of Azure CLI's client id in this process (the baseline's refresh token:
    the registration's own one is spent by the PRT request)."""

    def __init__(self, auth: rig.Authority, session: requests.Session) -> None:
        self.session = session
        _, joined_with = _signed_in(auth, session, BROKER_CLIENT, DRS_SCOPE)
        self.app, _ = _signed_in(auth, session, AZURE_CLI, SCOPE)
        self.account = self.app.get_accounts()[0]
        drs = DrsClient(session)
        found = drs.discover(auth.authority, auth.tenant_id)
        self.device_key = devicecrypto.new_rsa_key()
        self.transport_key = devicecrypto.new_rsa_key()
        self.cert_der = drs.join(found, joined_with["access_token"], self.device_key,
                                 self.transport_key).cert_der
        self.token_endpoint = found.token_endpoint
        self.prt, self.session_key = self._prt(joined_with["refresh_token"])

    def nonce(self) -> str:
        answer = self.session.post(self.token_endpoint, data={"grant_type": "srv_challenge"},
                                   timeout=10)
        answer.raise_for_status()
        return str(answer.json()["Nonce"])

    def _prt(self, refresh_token: str) -> tuple[str, bytes]:
        claims = {"client_id": BROKER_CLIENT, "scope": "openid aza", "grant_type":
                  "refresh_token", "refresh_token": refresh_token,
                  "request_nonce": self.nonce()}
        request = devicecrypto.sign_device_jwt(claims, self.device_key, self.cert_der)
        answer = self._post(request).json()
        if "session_key_jwe" not in answer:
            raise RuntimeError(f"no PRT: {answer.get('error_description', answer)}")
        key = devicecrypto.unwrap_session_key(answer["session_key_jwe"], self.transport_key)
        return str(answer["refresh_token"]), key

    def _post(self, request: str) -> requests.Response:
        return self.session.post(self.token_endpoint, timeout=10, data={
            "grant_type": JWT_BEARER, "request": request, "client_info": "1",
            "windows_api_version": "2.0"})

    def exchange(self, client_id: str, nonce: str) -> dict[str, Any]:
        """One PRT exchange: an access token (and refresh token) for ``client_id``."""
        now = int(time.time())
        claims = {"client_id": client_id, "scope": f"openid profile offline_access {SCOPE}",
                  "grant_type": "refresh_token", "refresh_token": self.prt,
                  "request_nonce": nonce, "iat": str(now), "exp": str(now + 300)}
        answer = self._post(devicecrypto.sign_session_jwt(claims, self.session_key))
        if answer.status_code != 200:
            raise RuntimeError(f"exchange refused: {answer.text[:300]}")
        return devicecrypto.decrypt_response(answer.text, self.session_key)

    def refresh(self) -> dict[str, Any]:
        """msal's forced refresh of Azure CLI's own refresh token (the baseline)."""
        result = self.app.acquire_token_silent([SCOPE], self.account, force_refresh=True)
        if not result or "access_token" not in result:
            raise RuntimeError("msal's forced refresh failed")
        return result


def _alternating(a: Callable[[], object], b: Callable[[], object],
                 before_block: Callable[[], None] = lambda: None) -> tuple[list[float], ...]:
    a_s: list[float] = []
    b_s: list[float] = []
    for _ in range(BLOCKS):
        before_block()
        a_s += measure(a, repeat=CALLS_PER_BLOCK, warmup=1)
        b_s += measure(b, repeat=CALLS_PER_BLOCK, warmup=1)
    return a_s, b_s


def protocol_rows(auth: rig.Authority) -> list[Row]:
    session = requests.Session()
    session.verify = auth.ca_bundle
    device = Device(auth, session)
    nonce = [device.nonce()]

    def fresh_nonce() -> None:
        nonce[0] = device.nonce()

    def exchange() -> None:
        body = device.exchange(str(uuid.uuid4()), nonce[0])
        if "access_token" not in body:
            raise RuntimeError("the exchange answered no access token")

    exchange_s, refresh_s = _alternating(exchange, device.refresh, fresh_nonce)
    nonce_s = measure(device.nonce, repeat=CALLS_PER_BLOCK)
    sign_s = measure(lambda: devicecrypto.sign_session_jwt({"a": 1}, device.session_key),
                     repeat=200)
    row = Row("protocol: PRT exchange for a new client id, this process (median)",
              median_ms(exchange_s), "ms", baseline=median_ms(refresh_s),
              goal=f"≤ {GOAL}× msal forced refresh")
    row.ok = row.ratio is not None and row.ratio <= GOAL
    return [row, Row("↳ srv_challenge nonce request (once a block)", median_ms(nonce_s), "ms"),
            Row("↳ one KDFv2 session JWT signature in-process", median_ms(sign_s), "ms")]


# --- through the daemon ----------------------------------------------------------------------

def _served(tmp: Path) -> list[str]:
    path = tmp / "state" / "authbroker" / "broker" / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [str(json.loads(line).get("served")) for line in lines if line.startswith("{")]


def daemon_rows(auth: rig.Authority, tmp: Path) -> list[Row]:
    with rig.private_bus() as bus, rig.broker(bus, auth, tmp), \
            rig.environ(DBUS_SESSION_BUS_ADDRESS=bus.address), \
            BrokerClient(bus=bus.address, timeout=120) as client:
        known = broker1.AuthParameters(client_id=AZURE_CLI, requested_scopes=(SCOPE,))
        signed_in = client.acquire_token_interactively(known, on_device_code=None)
        if signed_in.account is None:
            raise RuntimeError("the sign-in through the daemon named no account")
        known = dataclasses.replace(known, account=signed_in.account)

        def new_client() -> None:
            client.acquire_token_silently(dataclasses.replace(known, client_id=str(uuid.uuid4())))

        refused_s = measure(lambda: _refused(new_client), repeat=CALLS_PER_BLOCK * 2)
        hid = signed_in.account.home_account_id
        status = client.register_device(home_account_id=hid, on_device_code=None)
        if status.prt != "active":
            raise RuntimeError(f"registered, but the PRT is {status.prt!r}")
        forced = dataclasses.replace(known, force_refresh=True)
        before = len(_served(tmp))

        prt_s, refresh_s = _alternating(new_client, lambda: client.acquire_token_silently(forced))
        served = _served(tmp)[before:]
    counts = {how: served.count(how) for how in sorted(set(served))}
    print(json.dumps({"daemon_served": counts}), file=sys.stderr)
    calls = BLOCKS * (CALLS_PER_BLOCK + 1)
    if counts.get("prt", 0) < calls or counts.get("refresh", 0) < calls:
        raise RuntimeError(f"the calls were not served as measured: {counts}")
    row = Row("daemon: silent token for a new client id from the PRT, BrokerClient (median)",
              median_ms(prt_s), "ms", baseline=median_ms(refresh_s),
              goal=f"≤ {GOAL}× forced refresh (known client)")
    row.ok = row.ratio is not None and row.ratio <= GOAL
    return [row, Row("↳ the same call before the registration (msal finds nothing: refused)",
                     median_ms(refused_s), "ms")]


def _refused(call: Callable[[], object]) -> None:
    try:
        call()
    except BrokerStatusError as exc:
        if exc.status != broker1.Status.INTERACTION_REQUIRED:
            raise
        return
    raise RuntimeError("a new client id got a token without a device")


def main() -> str:
    load_before = rig.load_average()
    with tempfile.TemporaryDirectory(prefix="ab-bench-prt-") as name:
        tmp = Path(name)
        with rig.authority(tmp) as auth, rig.environ(**rig.trust(auth)):
            rows = daemon_rows(auth, tmp) + protocol_rows(auth)
    print(json.dumps({"load_before": load_before, "load_after": rig.load_average(),
                      "calls_a_side": BLOCKS * CALLS_PER_BLOCK}), file=sys.stderr)
    return report(f"Device identity: PRT-served silent tokens ({rig.load_average()})", rows)


if __name__ == "__main__":
    main()
