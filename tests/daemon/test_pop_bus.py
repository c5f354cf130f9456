"""PoP through the real daemon process on a private bus with the local authority, driven by our
own clients: a PoP token and ``generateSignedHttpRequest`` (blocking and asyncio), malformed
``popParams`` answered with an error object while the daemon keeps serving, and audit lines that
say PoP without holding an SHR, a token or a key."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

from authbroker import broker1, shr
from authbroker.authority import DEMO_PASSWORD, DEMO_USERS
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.errors import BrokerStatusError
from daemon.test_pop_core import POP, bound_kid, verified_shr
from fixtures.daemon import DaemonProcess, daemon_env

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
SCOPE = "https://storage.azure.com/.default"
AUTHORITY = "https://127.0.0.1/organizations"


def auth(**kw: Any) -> broker1.AuthParameters:
    return broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(SCOPE,),
                                  authority=AUTHORITY, **kw)


@pytest.fixture
def running(dbus_session, authority, tmp_path: Path, started_daemons):
    env = daemon_env(authority, dbus_session, tmp_path, AUTHBROKER_UA_USERNAME=DEMO_USERS[0],
                     AUTHBROKER_UA_PASSWORD=DEMO_PASSWORD)
    daemon = DaemonProcess(dbus_session, env, tmp_path, "-v", store=tmp_path / "store.enc")
    started_daemons.append(daemon)
    daemon.start()
    return daemon, tmp_path / "state" / "authbroker" / "broker" / "audit.jsonl"


def raw_call(method: str, request_json: str) -> dict[str, Any]:
    """One Broker1 call with a request text of our own making; the reply object."""
    address = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                          interface=broker1.INTERFACE)
    with open_dbus_connection(bus="SESSION") as conn:
        reply = conn.send_and_get_reply(new_method_call(
            address, method, "sss", (broker1.PROTOCOL_VERSION, "corr-raw", request_json)),
            timeout=30)
    result: dict[str, Any] = json.loads(reply.body[0])
    return result


def test_pop_tokens_and_signed_requests_through_our_clients(running) -> None:
    daemon, audit_path = running
    with BrokerClient(timeout=60) as client:
        signed_in = client.acquire_token_interactively(auth(is_sign_in=True),
                                                       on_device_code=None)
        account = signed_in.account
        assert account is not None
        token = client.acquire_token_silently(auth(account=account, pop_params=POP))
        assert token.access_token_type is broker1.AccessTokenType.POP
        payload = verified_shr(token.access_token)
        kid = shr.thumbprint(payload["cnf"]["jwk"])
        assert bound_kid(payload) == kid
        pop = dataclasses.replace(POP, nonce="other")
        signed = client.generate_signed_http_request(CLIENT_ID, pop, account.home_account_id)
        signed_payload = verified_shr(signed, pop)
        assert "at" not in signed_payload and signed_payload["cnf"] == payload["cnf"]
        with pytest.raises(BrokerStatusError) as err:
            client.generate_signed_http_request(CLIENT_ID, pop, "nobody.tenant")
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED

    async def aio() -> str:
        async with AsyncBrokerClient(timeout=60) as client:
            again = await client.acquire_token_silently(auth(account=account, pop_params=POP))
            assert verified_shr(again.access_token)["at"] == payload["at"]
            return await client.generate_signed_http_request(
                CLIENT_ID, dataclasses.replace(pop, home_account_id=account.home_account_id))

    assert verified_shr(asyncio.run(aio()), pop)["cnf"] == payload["cnf"]

    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    served = [(e["method"], e["served"], e.get("pop", False)) for e in lines]
    assert served == [
        ("acquireTokenInteractively", "sign-in", False),
        ("acquireTokenSilently", "refresh", True),
        ("generateSignedHttpRequest", "signed", True),
        ("generateSignedHttpRequest", "error", True),
        ("acquireTokenSilently", "cache", True),
        ("generateSignedHttpRequest", "signed", True),
    ]
    text = audit_path.read_text() + daemon.log_text()
    for secret in (token.access_token, payload["at"], signed, "PRIVATE KEY", "nonce-1"):
        assert secret not in text


@pytest.mark.parametrize("pop_params", [
    '"GET"', '[1]', '{"httpMethod": 5, "uriHost": "h", "uriPath": "/"}',
    '{"httpMethod": "GET", "uriHost": "h"}', '{}',
    '{"httpMethod": "GET", "uriHost": "h", "uriPath": "/", "authenticationScheme": "mtls_pop"}',
])
def test_malformed_pop_params_get_an_error_object_and_the_daemon_keeps_serving(
        running, pop_params: str) -> None:
    daemon, _audit = running
    token_request = ('{"authParameters": {"clientId": "' + CLIENT_ID + '", "requestedScopes": ["'
                     + SCOPE + '"], "account": null, "popParams": ' + pop_params + "}}")
    reply = raw_call("acquireTokenSilently", token_request)
    error = reply["brokerTokenResponse"]["error"]
    assert error["status"] in (broker1.Status.UNEXPECTED, broker1.Status.API_CONTRACT_VIOLATION)
    assert error["context"] and "accessToken" not in reply["brokerTokenResponse"]
    reply = raw_call("generateSignedHttpRequest",
                     f'{{"clientId": "{CLIENT_ID}", "popParams": {pop_params}}}')
    assert reply["error"]["status"] in (broker1.Status.UNEXPECTED,
                                        broker1.Status.API_CONTRACT_VIOLATION)
    assert reply["error"]["context"]
    with BrokerClient(timeout=30) as client:
        assert client.get_linux_broker_version(CLIENT_ID)  # still serving
    assert daemon.running()
