"""The device's PRT through the real daemon process on a private bus, the local authority behind
it, driven by our clients: after registration a non-family client gets a silent token with no
prompt (served "prt", then a cache hit), the PRT survives a restart, acquirePrtSsoCookie in both
reply forms (its nonce the ssoUrl's ``sso_nonce``), removeAccount drops the PRT, and neither the
PRT nor its session key is in the daemon's log, the audit log or the store's bytes."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from authbroker import broker1, devicecrypto
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.errors import BrokerStatusError
from daemon.test_device_core import admin_act
from daemon.test_pop_bus import raw_call
from daemon.test_prt_core import APP, OTHER_APP, SCOPE, saved_prt
from fixtures.daemon import DaemonProcess, daemon_env

AUTHORITY = "https://127.0.0.1/organizations"


@pytest.fixture
def running(dbus_session, authority, tmp_path: Path, started_daemons):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=DEMO_USERS[0],
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD, AUTHBROKER_UI="browser")
    daemon = DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc")
    started_daemons.append(daemon)
    daemon.start()
    return daemon, tmp_path / "state" / "authbroker" / "broker" / "audit.jsonl"


def auth(client_id: str, account: broker1.Account) -> broker1.AuthParameters:
    return broker1.AuthParameters(client_id=client_id, requested_scopes=(SCOPE,),
                                  authority=AUTHORITY, account=account)


def served(audit_path: Path) -> list[tuple[str, str, str]]:
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    return [(e["method"], e["clientId"], e["served"]) for e in lines]


def secret_forms(prt: str, session_key: bytes) -> list[bytes]:
    return [prt.encode(), prt[10:60].encode(), session_key,
            base64.b64encode(session_key), base64.b64encode(session_key)[:20],
            devicecrypto.b64url(session_key).encode()]


def test_prt_serves_any_client_survives_a_restart_and_signs_cookies(running, tmp_path) -> None:
    daemon, audit_path = running
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
        assert device.prt == "active"
        [account] = client.get_accounts(APP)
        sign_ins = daemon.sign_ins()
        token = client.acquire_token_silently(auth(APP, account))
        assert jwt.decode(token.access_token,
                          options={"verify_signature": False})["deviceid"] == device.device_id
        again = client.acquire_token_silently(auth(APP, account))
        assert again.access_token == token.access_token
    assert daemon.sign_ins() == sign_ins  # no prompt for the new client
    assert served(audit_path)[-2:] == [("acquireTokenSilently", APP, "prt"),
                                       ("acquireTokenSilently", APP, "cache")]

    daemon.restart()
    url = "https://127.0.0.1/organizations/oauth2/authorize?client_id=" + APP
    with BrokerClient(timeout=60) as client:
        other = client.acquire_token_silently(auth(OTHER_APP, account))
        assert jwt.decode(other.access_token,
                          options={"verify_signature": False})["deviceid"] == device.device_id
        challenged = client.acquire_prt_sso_cookie(account, sso_url=url + "&sso_nonce=N-7")
        assert challenged.cookie_name == "x-ms-RefreshTokenCredential"
        assert devicecrypto.read_session_jwt(challenged.cookie_content) \
            .claims["request_nonce"] == "N-7"
    assert daemon.sign_ins() == sign_ins
    assert served(audit_path)[-2:] == [("acquireTokenSilently", OTHER_APP, "prt"),
                                       ("acquirePrtSsoCookie", "", "prt")]

    request = {"account": account.to_wire(), "ssoUrl": url, "mamEnrollment": False,
               "authParameters": {"clientId": APP, "authorizationType": 8, "ssoUrl": url,
                                  "account": account.to_wire(), "requestedScopes": []}}
    reply = raw_call("acquirePrtSsoCookie", json.dumps(request))
    assert reply["cookieName"] == "x-ms-RefreshTokenCredential" and reply["cookieContent"]
    assert reply["cookieItems"] == [{"cookieName": reply["cookieName"],
                                     "cookieContent": reply["cookieContent"]}]
    assert reply["account"]["homeAccountId"] == account.home_account_id
    assert devicecrypto.read_session_jwt(reply["cookieContent"]).claims["request_nonce"]

    daemon.stop()
    state = saved_prt(tmp_path / "store.enc", account.home_account_id)
    assert state is not None
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.enc*"))
    texts = [raw, daemon.log_text().encode(), audit_path.read_bytes(),
             daemon.stdout_text().encode()]
    for form in secret_forms(state.prt, state.session_key):
        for text in texts:
            assert form not in text
    daemon.start()

    async def removed() -> None:
        async with AsyncBrokerClient(timeout=60) as client:
            await client.remove_account(account, APP)
            with pytest.raises(BrokerStatusError) as err:
                await client.acquire_prt_sso_cookie(account, sso_url=url)
            assert err.value.status == broker1.Status.DEVICE_NOT_REGISTERED
            with pytest.raises(BrokerStatusError) as err:
                await client.acquire_token_silently(auth(APP, account))
            assert err.value.status == broker1.Status.INTERACTION_REQUIRED

    asyncio.run(removed())
    daemon.stop()
    assert saved_prt(tmp_path / "store.enc", account.home_account_id) is None


def test_without_a_device_the_cookie_is_an_error_object(running) -> None:
    reply: dict[str, Any] = raw_call("acquirePrtSsoCookie", "{}")
    assert reply["error"]["status"] == broker1.Status.DEVICE_NOT_REGISTERED
    assert reply["error"]["context"] and "cookieContent" not in reply


def test_disabled_device_typed_fallback_and_status(running, authority) -> None:
    daemon, audit_path = running
    with BrokerClient(timeout=120) as client:
        device = client.register_device(on_device_code=None)
        [account] = client.get_accounts(APP)
        admin_act(authority, device.device_id, "disable")
        with pytest.raises(BrokerStatusError) as err:
            client.acquire_token_silently(auth(APP, account))
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert err.value.error_code == 135011
        status = client.get_device_status()
        assert status is not None and status.state == "disabled" and status.prt == "refused"
        assert not status.usable
        with pytest.raises(BrokerStatusError) as err:
            client.acquire_prt_sso_cookie(account)
        assert err.value.status == broker1.Status.DEVICE_NOT_REGISTERED
    assert served(audit_path)[-1] == ("acquirePrtSsoCookie", "", "error")
