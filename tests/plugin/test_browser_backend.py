"""The ``browser`` backend (msal's loopback flow) end to end: local authority, scripted user agent,
sync and aio credentials in one parametrized suite."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError

from azure.identity import AuthenticationRequiredError, CredentialUnavailableError
from azure.identity.broker._compat import within_dac
from plugin.conftest import POP, STORAGE_SCOPE, USERNAME, claims_of, sign_ins, two_tenants


def test_sign_in_once_then_served_from_memory(twin, cred_kwargs, browser_backend) -> None:
    credential = twin(**cred_kwargs)
    first = credential.get_token(STORAGE_SCOPE)
    assert claims_of(first.token)["upn"] == USERNAME
    assert sign_ins(browser_backend) == 1
    again = credential.get_token_info(STORAGE_SCOPE)
    assert again.token == first.token
    assert sign_ins(browser_backend) == 1


def test_authenticate_returns_the_signed_in_record(twin, cred_kwargs, browser_backend) -> None:
    credential = twin(**cred_kwargs)
    record = credential.authenticate(scopes=[STORAGE_SCOPE])
    assert record.username == USERNAME
    assert record.tenant_id == cred_kwargs["tenant_id"]
    assert record.authority == cred_kwargs["authority"].removeprefix("https://")
    # the token of that sign-in is cached: no second sign-in
    credential.get_token(STORAGE_SCOPE)
    assert sign_ins(browser_backend) == 1


def test_disable_interactive_fallback_never_opens_a_browser(
    twin, cred_kwargs, browser_backend
) -> None:
    credential = twin(disable_interactive_fallback=True, **cred_kwargs)
    with pytest.raises(AuthenticationRequiredError, match="disable_interactive_fallback"):
        credential.get_token(STORAGE_SCOPE)
    assert sign_ins(browser_backend) == 0


def test_disable_automatic_authentication_until_authenticate(
    twin, cred_kwargs, browser_backend
) -> None:
    credential = twin(disable_automatic_authentication=True, **cred_kwargs)
    with pytest.raises(AuthenticationRequiredError, match="authenticate"):
        credential.get_token(STORAGE_SCOPE)
    assert sign_ins(browser_backend) == 0
    credential.authenticate(scopes=[STORAGE_SCOPE])
    assert claims_of(credential.get_token(STORAGE_SCOPE).token)["upn"] == USERNAME
    assert sign_ins(browser_backend) == 1


def test_default_account_without_a_broker_falls_back_to_the_picker(
    twin, cred_kwargs, browser_backend
) -> None:
    credential = twin(use_default_broker_account=True, **cred_kwargs)
    assert claims_of(credential.get_token(STORAGE_SCOPE).token)["upn"] == USERNAME
    assert sign_ins(browser_backend) == 1


def test_cae_has_its_own_cache_and_claims_bypass_it(twin, cred_kwargs, browser_backend) -> None:
    credential = twin(**cred_kwargs)
    plain = credential.get_token(STORAGE_SCOPE)
    cae = credential.get_token(STORAGE_SCOPE, enable_cae=True)
    assert "CP1" in claims_of(cae.token).get("xms_cc", [])
    assert "xms_cc" not in claims_of(plain.token)
    assert credential.get_token(STORAGE_SCOPE, enable_cae=True).token == cae.token
    challenge = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    fresh = credential.get_token(STORAGE_SCOPE, enable_cae=True, claims=challenge)
    assert fresh.token != cae.token
    assert "CP1" in claims_of(fresh.token).get("xms_cc", [])


def test_two_tenants(twin, cred_kwargs, browser_backend) -> None:
    credential = twin(additionally_allowed_tenants=["contoso.example"], **cred_kwargs)
    two_tenants(credential)
    assert sign_ins(browser_backend) == 1  # the same account, silently, for the other tenant


def test_pop_is_refused_not_turned_into_bearer(twin, cred_kwargs, browser_backend) -> None:
    credential = twin(**cred_kwargs)
    with pytest.raises(ClientAuthenticationError, match="Proof-of-Possession"):
        credential.get_token_info(STORAGE_SCOPE, options={"pop": POP})
    assert sign_ins(browser_backend) == 0


@pytest.mark.parametrize("in_dac", [False, True], ids=["alone", "in-dac"])
def test_timeout_error_type_depends_on_dac(
    twin, cred_kwargs, monkeypatch: pytest.MonkeyPatch, scripted_browser, in_dac: bool
) -> None:
    monkeypatch.setenv("AUTHBROKER_BACKEND", "browser")
    monkeypatch.setenv("AUTHBROKER_UA_PASSWORD", "wrong password")  # the person never finishes
    credential = twin(**{**cred_kwargs, "timeout": 2})
    marker = within_dac.set(in_dac)
    try:
        with pytest.raises(ClientAuthenticationError, match="Timed out") as info:
            credential.get_token(STORAGE_SCOPE)
    finally:
        within_dac.reset(marker)
    assert isinstance(info.value, CredentialUnavailableError) is in_dac
