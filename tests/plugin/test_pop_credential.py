"""Proof-of-Possession through the ``dbus`` backend: the real daemon on a private bus, the local
authority's PoP resource over TLS. Sync and aio credentials in one parametrized suite; every
SHR is checked by the resource (200) and, independently, by ``plugin.pop_checks``."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import ClientAuthenticationError

from plugin.conftest import STORAGE_SCOPE, USERNAME, claims_of
from plugin.pop_checks import call, challenge, verify_shr


def pop_options(authority, nonce: str, path: str = "", method: str = "GET") -> dict:
    return {"pop": {"resource_request_method": method,
                    "resource_request_url": authority.pop_resource + path, "nonce": nonce}}


def test_pop_tokens_are_fresh_shrs_the_resource_accepts(twin, cred_kwargs, authority,
                                                        broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    scope, url = authority.pop_resource_scope, authority.pop_resource
    seen = set()
    for _ in range(2):
        nonce = challenge(url)
        info = credential.get_token_info(scope, options=pop_options(authority, nonce))
        assert info.token_type.lower() == "pop"
        payload = verify_shr(info.token, method="GET", url=url, nonce=nonce)
        at = claims_of(payload["at"])
        assert USERNAME in (at.get("upn"), at.get("preferred_username"))
        answer = call(url, info.token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["preferred_username"] == USERNAME
        seen.add(info.token)
    assert len(seen) == 2  # never the earlier call's SHR
    assert broker_daemon.sign_ins() == 1


def test_a_pop_call_is_never_stale_and_bearer_stays_bearer(twin, cred_kwargs, authority,
                                                            broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    scope = authority.pop_resource_scope
    bearer = credential.get_token_info(scope)
    assert bearer.token_type.lower() == "bearer" and "cnf" not in claims_of(bearer.token)
    first = credential.get_token_info(scope, options=pop_options(authority, "n-1", "/a"))
    time.sleep(1.1)  # RS256 is deterministic: the same request in the same second signs alike
    again = credential.get_token_info(scope, options=pop_options(authority, "n-1", "/a"))
    assert again.token != first.token
    assert claims_of(again.token)["ts"] > claims_of(first.token)["ts"]
    other = credential.get_token_info(scope, options=pop_options(authority, "n-2", "/b", "POST"))
    verify_shr(other.token, method="POST", url=authority.pop_resource + "/b", nonce="n-2")
    after = credential.get_token_info(scope)  # bearer after PoP: the bearer token, not an SHR
    assert after.token_type.lower() == "bearer" and after.token == bearer.token
    assert "cnf" not in claims_of(after.token)
    fresh = twin(**cred_kwargs)  # a new credential: its first bearer from the daemon, not PoP
    plain = fresh.get_token_info(scope)
    assert plain.token_type.lower() == "bearer" and "cnf" not in claims_of(plain.token)


def test_get_token_with_pop_keyword_gives_an_shr(twin, cred_kwargs, authority,
                                                 broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    nonce = challenge(authority.pop_resource)
    pop = pop_options(authority, nonce)["pop"]
    token = credential.get_token(authority.pop_resource_scope, pop=pop)
    verify_shr(token.token, method="GET", url=authority.pop_resource, nonce=nonce)
    assert call(authority.pop_resource, token.token).status_code == 200


def test_mtls_pop_still_fails_clearly(twin, cred_kwargs, broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    with pytest.raises(ClientAuthenticationError, match="mTLS Proof-of-Possession"):
        credential.get_token_info(STORAGE_SCOPE, options={"pop": True})
    assert broker_daemon.sign_ins() == 0


def test_the_same_shr_replayed_elsewhere_is_refused(twin, cred_kwargs, authority,
                                                    broker_daemon) -> None:
    credential = twin(**cred_kwargs)
    nonce = challenge(authority.pop_resource)
    info = credential.get_token_info(authority.pop_resource_scope,
                                     options=pop_options(authority, nonce))
    assert call(authority.pop_resource + "/other", info.token).status_code == 401
    assert call(authority.pop_resource, info.token, method="POST").status_code == 401
