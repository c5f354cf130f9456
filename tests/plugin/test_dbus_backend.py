"""The ``dbus`` backend against the real daemon on a private bus and the local authority:
sync and aio credentials in one parametrized suite. The plugin process's own $BROWSER is
/bin/false — every sign-in below is the daemon's (counted by the scripted agent's log)."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError

from authbroker.broker1 import INTERFACE
from azure.identity import AuthenticationRequiredError, CredentialUnavailableError
from azure.identity.broker import InteractiveBrowserBrokerCredential
from azure.identity.broker._compat import within_dac
from azure.identity.broker.aio import InteractiveBrowserBrokerCredential as AioCredential
from plugin.conftest import POP, STORAGE_SCOPE, USERNAME, claims_of, two_tenants


def test_sign_in_through_the_daemon_then_memory(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    first = credential.get_token(STORAGE_SCOPE)
    assert claims_of(first.token)["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1
    assert credential.get_token_info(STORAGE_SCOPE).token == first.token
    assert broker_daemon.sign_ins() == 1
    fallback = credential.credential._driver.fallback
    assert list(fallback.backends) == ["dbus"]  # no fallback happened on the way


def test_record_restores_the_account_silently(twin, cred_kwargs, broker_daemon) -> None:
    record = twin(**cred_kwargs).authenticate(scopes=[STORAGE_SCOPE])
    assert record.username == USERNAME
    restored = twin(
        authentication_record=record,
        disable_interactive_fallback=True,
        disable_instance_discovery=True,
    )
    token = restored.get_token(STORAGE_SCOPE)
    assert claims_of(token.token)["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1


def test_default_broker_account_is_used_silently(twin, cred_kwargs, broker_daemon) -> None:
    twin(**cred_kwargs).get_token(STORAGE_SCOPE)  # the broker now has one account
    quiet = twin(use_default_broker_account=True, disable_interactive_fallback=True, **cred_kwargs)
    assert claims_of(quiet.get_token(STORAGE_SCOPE).token)["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1


def test_without_default_account_the_picker_follows(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(use_default_broker_account=True, **cred_kwargs)
    assert claims_of(credential.get_token(STORAGE_SCOPE).token)["upn"] == USERNAME
    assert broker_daemon.sign_ins() == 1


def test_without_default_account_and_no_ui_the_error_says_so(
    twin, cred_kwargs, broker_daemon
) -> None:
    credential = twin(
        use_default_broker_account=True, disable_interactive_fallback=True, **cred_kwargs
    )
    with pytest.raises(AuthenticationRequiredError, match="disable_interactive_fallback"):
        credential.get_token(STORAGE_SCOPE)
    assert broker_daemon.sign_ins() == 0


def test_disable_interactive_fallback(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(disable_interactive_fallback=True, **cred_kwargs)
    with pytest.raises(AuthenticationRequiredError, match="disable_interactive_fallback"):
        credential.get_token(STORAGE_SCOPE)
    assert broker_daemon.sign_ins() == 0


def test_claims_challenge_bypasses_every_cache(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    first = credential.get_token(STORAGE_SCOPE)
    challenge = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    fresh = credential.get_token(STORAGE_SCOPE, claims=challenge)
    assert fresh.token != first.token
    assert broker_daemon.sign_ins() == 1  # a silent refresh, not a new sign-in


def test_cae_first_gets_a_cp1_token_and_its_own_cache(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    cae = credential.get_token(STORAGE_SCOPE, enable_cae=True)
    assert "CP1" in claims_of(cae.token).get("xms_cc", [])
    assert credential.get_token(STORAGE_SCOPE, enable_cae=True).token == cae.token
    challenge = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    fresh = credential.get_token(STORAGE_SCOPE, enable_cae=True, claims=challenge)
    assert fresh.token != cae.token
    assert "CP1" in claims_of(fresh.token).get("xms_cc", [])
    assert broker_daemon.sign_ins() == 1


def test_cae_after_a_plain_token_is_still_cp1(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    plain = credential.get_token(STORAGE_SCOPE)
    cae = credential.get_token(STORAGE_SCOPE, enable_cae=True)
    assert "xms_cc" not in claims_of(plain.token)
    assert "CP1" in claims_of(cae.token).get("xms_cc", [])


def test_two_tenants(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(additionally_allowed_tenants=["contoso.example"], **cred_kwargs)
    two_tenants(credential)
    assert broker_daemon.sign_ins() == 1


def test_pop_is_never_downgraded_to_bearer(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    credential.get_token(STORAGE_SCOPE)
    try:
        info = credential.get_token_info(STORAGE_SCOPE, options={"pop": POP})
    except ClientAuthenticationError as exc:
        assert "Proof-of-Possession" in str(exc)
    else:  # a broker that can sign: the token must be a PoP one
        assert info.token_type.lower() == "pop"


@pytest.mark.parametrize("in_dac", [False, True], ids=["alone", "in-dac"])
def test_broker_errors_carry_the_broker_message(
    twin, authority, broker_daemon, in_dac: bool
) -> None:
    credential = twin(
        authority=authority.authority, tenant_id="fabrikam.example", disable_instance_discovery=True
    )
    marker = within_dac.set(in_dac)
    try:
        with pytest.raises(ClientAuthenticationError) as info:
            credential.get_token(STORAGE_SCOPE)
    finally:
        within_dac.reset(marker)
    assert isinstance(info.value, CredentialUnavailableError) is in_dac
    assert "fabrikam.example" in str(info.value) or "AADSTS" in str(info.value)


def test_msa_passthrough_reaches_the_authority(twin, cred_kwargs, start_daemon) -> None:
    daemon = start_daemon(AUTHBROKER_UA_USERNAME="personal@outlook.example")
    kwargs = {**cred_kwargs, "tenant_id": "organizations", "timeout": 4}
    token = twin(enable_msa_passthrough=True, **kwargs).get_token(STORAGE_SCOPE)
    assert claims_of(token.token)["unique_name"] == "personal@outlook.example"
    # without passthrough the authority refuses the personal account: the person never finishes
    with pytest.raises(ClientAuthenticationError, match="Timed out after waiting 4 seconds"):
        twin(**kwargs).get_token(STORAGE_SCOPE)
    assert daemon.sign_ins() == 2


def test_nothing_on_stdout_and_no_pii_in_logs(
    twin, cred_kwargs, broker_daemon, capfd, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    credential = twin(**cred_kwargs)
    token = credential.get_token(STORAGE_SCOPE)
    credential.get_token(STORAGE_SCOPE)
    out, _err = capfd.readouterr()
    assert out == ""
    assert token.token not in caplog.text
    assert USERNAME not in caplog.text


def test_support_logging_alone_turns_on_pii(twin, cred_kwargs, broker_daemon, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = twin(enable_support_logging=True, **cred_kwargs).get_token(STORAGE_SCOPE)
    assert USERNAME in caplog.text
    assert token.token not in caplog.text


def test_concurrent_callers_share_one_sign_in(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    if credential.flavour == "sync":
        with ThreadPoolExecutor(4) as pool:
            tokens = list(pool.map(lambda _: credential.get_token(STORAGE_SCOPE), range(4)))
    else:
        async def together() -> list:
            calls = [credential.credential.get_token(STORAGE_SCOPE) for _ in range(4)]
            return await asyncio.gather(*calls)

        tokens = credential._run(together())
    assert len({t.token for t in tokens}) == 1
    assert broker_daemon.sign_ins() == 1


def test_credential_survives_pickling(cred_kwargs, broker_daemon) -> None:
    with InteractiveBrowserBrokerCredential(**cred_kwargs) as credential:
        token = credential.get_token(STORAGE_SCOPE)
        with pickle.loads(pickle.dumps(credential)) as copy:
            assert copy.get_token(STORAGE_SCOPE).token == token.token


def test_aio_credential_across_event_loops(cred_kwargs, broker_daemon) -> None:
    """asyncio.run() again and again with one credential: each loop gets its own connection."""
    credential = AioCredential(**cred_kwargs)
    tokens = []
    for _ in range(3):  # a sign-in, then two silent calls, each on a new event loop
        credential._plugin.clear()  # make every round talk to the broker
        tokens.append(asyncio.run(credential.get_token(STORAGE_SCOPE)))
    assert {claims_of(t.token)["upn"] for t in tokens} == {USERNAME}
    assert broker_daemon.sign_ins() == 1
    asyncio.run(credential.close())


@pytest.mark.parametrize(
    ("handle", "expected"),
    [(0x2A00007, 0x2A00007), (None, 1), (msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE, 1)],
    ids=["x11-window", "default", "console"],
)
def test_parent_window_handle_reaches_the_broker(
    cred_kwargs, broker_daemon, dbus_session, tmp_path, handle, expected
) -> None:
    """The request on the bus (method calls only: replies carrying tokens are not recorded)."""
    rule = f"type='method_call',interface='{INTERFACE}',member='acquireTokenInteractively'"
    with open(tmp_path / "monitor.txt", "wb") as out:
        monitor = subprocess.Popen(
            ["dbus-monitor", "--address", dbus_session.address, rule], stdout=out
        )
    try:
        time.sleep(0.3)  # let the monitor attach
        with InteractiveBrowserBrokerCredential(parent_window_handle=handle,
                                                **cred_kwargs) as credential:
            credential.get_token(STORAGE_SCOPE)
        time.sleep(0.2)
    finally:
        monitor.terminate()
        monitor.wait(5)
    text = (tmp_path / "monitor.txt").read_text()
    request = json.loads(text[text.index('string "{') + 8 : text.rindex('}"') + 1])
    assert request["parentWindowHandle"] == expected


def test_id_token_is_read_once_and_an_unreadable_one_fails() -> None:
    """The broker's id_token names the account (entra's rule); garbage is never a token."""
    from authbroker.broker1 import TokenResult
    from authbroker.plugin.backends.base import BackendError, Kind, TokenQuery
    from authbroker.plugin.backends.dbus import to_token

    query = TokenQuery(client_id="c", authority="https://login.example", tenant_id="t",
                       scopes=(STORAGE_SCOPE,))
    payload = {"oid": "u", "tid": "t", "preferred_username": USERNAME}
    id_token = f"e30.{_b64(payload)}.sig"
    good = TokenResult(access_token="a", id_token=id_token, client_info="", expires_on=9e9)
    token = to_token(good, query)
    assert token.id_token_claims == payload
    assert token.account is not None
    assert (token.account.home_account_id, token.account.username) == ("u.t", USERNAME)
    assert token.account.environment == "login.example"
    with pytest.raises(BackendError, match="unreadable id_token") as info:
        to_token(TokenResult(access_token="a", id_token="not-a-jwt", client_info="",
                             expires_on=9e9), query)
    assert info.value.kind is Kind.FAILED


def _b64(claims: dict) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
