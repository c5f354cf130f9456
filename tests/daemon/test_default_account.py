"""Choosing the default account (``SetDefaultAccount`` on our own interface): the real daemon on a
private bus, the local authority behind it, clients and the CLI as a person uses them."""

from __future__ import annotations

import asyncio
import json
from contextlib import closing

import jwt
import pytest
from jeepney import DBusAddress, MessageType, new_method_call

from authbroker import broker1
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.errors import BrokerStatusError
from cli.test_cli import SCOPE, SECOND, USER, cli, daemon, env  # noqa: F401  (env: a fixture)

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
UI = DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                 interface=broker1.EXTENSION_INTERFACE)
NO_BROWSER = {"BROWSER": "/bin/false %s"}  # from here on no sign-in can happen


def default_sign_in(client: BrokerClient) -> broker1.TokenResult:
    """What pymsalruntime sends for the default account: ``account: null``, ``isSignIn``."""
    auth = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(SCOPE,),
                              authority="https://127.0.0.1/organizations")
    assert auth.to_wire()["account"] is None and auth.to_wire()["isSignIn"] is True
    return client.acquire_token_silently(auth)


def user_of(token: broker1.TokenResult) -> str:
    assert token.account is not None
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert claims["upn"] == token.account.username
    return token.account.username


def set_default_raw(conn, request: dict) -> dict:
    msg = new_method_call(UI, broker1.SET_DEFAULT_ACCOUNT, "ss", ("corr-default",
                                                                  json.dumps(request)))
    reply = conn.send_and_get_reply(msg, timeout=10)
    assert reply.header.message_type is MessageType.method_return, reply.body
    return json.loads(reply.body[0])


@pytest.fixture
def two_accounts(dbus_session, env, tmp_path):  # noqa: F811
    """USER, then SECOND signed in (SECOND, the latest sign-in, is the default)."""
    with daemon(dbus_session, env, tmp_path):
        assert cli(env, "login", "--scope", SCOPE).returncode == 0
    with daemon(dbus_session, env, tmp_path, AUTHBROKER_UA_USERNAME=SECOND):
        assert cli(env, "login", "--scope", SCOPE).returncode == 0
    return env


def test_chosen_default_serves_account_null_sign_ins_and_survives_a_restart(
        dbus_session, two_accounts, tmp_path):
    run_env = two_accounts
    with daemon(dbus_session, run_env, tmp_path, **NO_BROWSER), BrokerClient(timeout=30) as client:
        assert user_of(default_sign_in(client)) == SECOND
        first = client.get_default_account()
        assert first is not None and first.username == SECOND

        client.set_default_account(username=USER.upper())  # usernames in any case
        assert user_of(default_sign_in(client)) == USER
        chosen = client.get_default_account()
        assert chosen is not None and chosen.username == USER

        with pytest.raises(BrokerStatusError) as err:
            client.set_default_account(username="nobody@contoso.example")
        assert err.value.status == broker1.Status.ACCOUNT_NOT_FOUND
        assert "nobody@contoso.example is not signed in" in err.value.context
        assert USER in err.value.context and SECOND in err.value.context
        assert user_of(default_sign_in(client)) == USER  # nothing changed

        # the wire: {"ok": true}, or a top-level error object as Broker1 methods answer
        with closing(dbus_session.connect()) as conn:
            assert set_default_raw(conn, {"homeAccountId": chosen.home_account_id}) == {"ok": True}
            reply = set_default_raw(conn, {"homeAccountId": "no.such"})
            assert set(reply) == {"error"}
            assert reply["error"]["status"] == int(broker1.Status.ACCOUNT_NOT_FOUND)
            assert isinstance(reply["error"]["tag"], int) and reply["error"]["context"]

    with daemon(dbus_session, run_env, tmp_path, **NO_BROWSER), BrokerClient(timeout=30) as client:
        assert user_of(default_sign_in(client)) == USER  # the choice was persisted
        listed = cli(run_env, "accounts")
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[0].startswith(f"* {USER}")
        assert listed.stdout.splitlines()[1].startswith(f"  {SECOND}")


def test_cli_set_default_and_the_async_client(dbus_session, two_accounts, tmp_path):
    run_env = two_accounts
    with daemon(dbus_session, run_env, tmp_path, **NO_BROWSER):
        done = cli(run_env, "accounts", "--set-default", USER)
        assert done.returncode == 0, done.stderr
        assert f"the default account is now {USER}" in done.stderr
        assert done.stdout.splitlines()[0].startswith(f"* {USER}")
        as_json = json.loads(cli(run_env, "accounts", "--output", "json").stdout)
        assert {a["username"]: a["default"] for a in as_json} == {USER: True, SECOND: False}

        unknown = cli(run_env, "accounts", "--set-default", "nobody@contoso.example")
        assert unknown.returncode == 1 and unknown.stdout == ""
        assert "nobody@contoso.example is not signed in" in unknown.stderr
        assert "authbroker accounts" in unknown.stderr  # the hint
        token = cli(run_env, "token", "--scope", SCOPE, "--output", "json")
        assert json.loads(token.stdout)["username"] == USER

        async def choose_second() -> broker1.Account | None:
            async with AsyncBrokerClient(timeout=30) as client:
                await client.set_default_account(username=SECOND)
                return await client.get_default_account()

        default = asyncio.run(choose_second())
        assert default is not None and default.username == SECOND
        token = cli(run_env, "token", "--scope", SCOPE, "--output", "json")
        assert json.loads(token.stdout)["username"] == SECOND
        with pytest.raises(ValueError):
            BrokerClient().set_default_account()
