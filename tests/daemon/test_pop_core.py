"""Proof-of-Possession through the broker core (no bus), against the real local authority, real
msal and the real encrypted store: each PoP call a fresh SHR over an access token bound to the
account's key, the memo and shared refreshes never mixing PoP and bearer, the key made once per
account, sealed in the store, deleted with the account, and refusals that name their reason."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from authbroker import broker1, shr
from authbroker.daemon.broker import BrokerCore
from authbroker.errors import BrokerStatusError
from fixtures.broker_core import (
    USER,
    CountingSession,
    ctx,
    interactive,
    make_core,
    person,
    silent,
)

POP = broker1.PopParams(http_method="GET", uri_host="resource.example:8443",
                        uri_path="/items/1", nonce="nonce-1")


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def verified_shr(token: str, pop: broker1.PopParams = POP) -> dict[str, Any]:
    """The SHR's payload, its signature checked with its own cnf.jwk and its header's kid the
    key's thumbprint; m, u, p and nonce those of ``pop``."""
    header = jwt.get_unverified_header(token)
    jwk = claims(token)["cnf"]["jwk"]
    assert header == {"alg": "RS256", "kid": shr.thumbprint(jwk), "typ": "pop"}
    key = RSAAlgorithm.from_jwk(json.dumps(jwk))
    payload = dict(jwt.decode(token, key, algorithms=["RS256"]))  # type: ignore[arg-type]
    assert (payload["m"], payload["u"], payload["p"]) == (
        pop.http_method, pop.uri_host, pop.uri_path)
    assert payload.get("nonce") == (pop.nonce or None)
    return payload


def bound_kid(payload: dict[str, Any]) -> str | None:
    """The ``cnf.kid`` of the access token inside an SHR."""
    return claims(payload["at"]).get("cnf", {}).get("kid")


async def signed_in(core: BrokerCore) -> broker1.Account:
    token = await interactive(core)
    assert token.account is not None
    return token.account


def test_silent_pop_is_a_fresh_shr_over_one_bound_access_token(authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        session = CountingSession()
        core = make_core(authority.authority, tmp_path / "store.enc", person(),
                         http_client=session)
        account = await signed_in(core)
        posts = session.token_posts
        first = await silent(core, account=account, pop_params=POP)
        assert first.access_token_type is broker1.AccessTokenType.POP
        payload = verified_shr(first.access_token)
        kid = shr.thumbprint(payload["cnf"]["jwk"])
        assert bound_kid(payload) == kid  # the authority bound the token to the account's key
        assert claims(payload["at"])["exp"] == pytest.approx(first.expires_on, abs=5)
        assert session.token_posts == posts + 1  # one refresh for the PoP-bound token
        other = dataclasses.replace(POP, http_method="POST", uri_path="/items/2", nonce="n2")
        second = await silent(core, account=account, pop_params=other)
        again = verified_shr(second.access_token, other)
        assert second.access_token != first.access_token
        assert again["at"] == payload["at"]  # the memoised access token, signed again
        assert shr.thumbprint(again["cnf"]["jwk"]) == kid
        assert session.token_posts == posts + 1
        await core.aclose()

    asyncio.run(scenario())


def test_pop_and_bearer_never_serve_each_other(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def same_core() -> broker1.Account:
        core = make_core(authority.authority, store, person())
        account = await signed_in(core)
        bearer = await silent(core, account=account)
        pop = await silent(core, account=account, pop_params=POP)
        later = await silent(core, account=account)
        assert bearer.access_token_type is broker1.AccessTokenType.BEARER
        assert "cnf" not in claims(bearer.access_token)
        assert verified_shr(pop.access_token)["at"] != bearer.access_token
        assert later.access_token == bearer.access_token  # the bearer memo, not the PoP one
        await core.aclose()
        return account

    async def restarted(account: broker1.Account) -> None:
        # memo empty: msal's own caches must keep them apart too, PoP first this time
        core = make_core(authority.authority, store)
        pop = await silent(core, account=account, pop_params=POP)
        bearer = await silent(core, account=account)
        pop_again = await silent(core, account=account, pop_params=POP)
        assert "cnf" not in claims(bearer.access_token)
        assert bearer.access_token_type is broker1.AccessTokenType.BEARER
        assert bound_kid(verified_shr(pop.access_token)) is not None
        assert verified_shr(pop_again.access_token)["at"] == verified_shr(pop.access_token)["at"]
        forced = await silent(core, account=account, pop_params=POP, force_refresh=True)
        assert verified_shr(forced.access_token)["at"] != verified_shr(pop.access_token)["at"]
        assert (await silent(core, account=account)).access_token == bearer.access_token
        await core.aclose()

    account = asyncio.run(same_core())
    asyncio.run(restarted(account))


def test_concurrent_pop_calls_share_one_refresh_and_each_gets_its_own_shr(
        authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        session = CountingSession()
        core = make_core(authority.authority, None, person(), http_client=session)
        account = await signed_in(core)
        posts = session.token_posts
        asks = [dataclasses.replace(POP, nonce=f"n{i}") for i in range(5)]
        bearer_ask = silent(core, account=account)
        results = await asyncio.gather(bearer_ask, *(
            silent(core, account=account, pop_params=p) for p in asks))
        bearer, pops = results[0], results[1:]
        payloads = [verified_shr(r.access_token, p) for r, p in zip(pops, asks, strict=True)]
        assert len({p["at"] for p in payloads}) == 1  # one PoP-bound access token
        assert len({r.access_token for r in pops}) == 5  # five SHRs, one per caller
        assert bearer.access_token_type is broker1.AccessTokenType.BEARER
        assert "cnf" not in claims(bearer.access_token)
        assert session.token_posts == posts + 1  # only the PoP token needed a refresh
        await core.aclose()

    asyncio.run(scenario())


def test_the_key_is_sealed_in_the_store_survives_a_restart_and_never_logged(
        authority, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "store.enc"

    async def first() -> tuple[broker1.Account, broker1.TokenResult]:
        core = make_core(authority.authority, store, person())
        account = await signed_in(core)
        token = await silent(core, account=account, pop_params=POP)
        await core.aclose()
        return account, token

    async def second(account: broker1.Account) -> broker1.TokenResult:
        core = make_core(authority.authority, store)
        token = await silent(core, account=account, pop_params=POP, force_refresh=True)
        await core.aclose()
        return token

    account, token = asyncio.run(first())
    kid = shr.thumbprint(verified_shr(token.access_token)["cnf"]["jwk"])
    again = verified_shr(asyncio.run(second(account)).access_token)
    assert shr.thumbprint(again["cnf"]["jwk"]) == kid and bound_kid(again) == kid
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    jwk_n = verified_shr(token.access_token)["cnf"]["jwk"]["n"]
    for secret in (b"PRIVATE KEY", kid.encode(), jwk_n.encode()):
        assert secret not in on_disk  # sealed: not even the public half is in the clear
    for text in (caplog.text, repr(token)):
        for secret in ("PRIVATE KEY", token.access_token, verified_shr(token.access_token)["at"]):
            assert secret not in text


def test_remove_account_deletes_the_key(authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person())
        account = await signed_in(core)
        before = verified_shr((await silent(core, account=account, pop_params=POP)).access_token)
        assert core.engine.tokens(account.home_account_id).has_pop_key
        await core.handle(broker1.Method.REMOVE_ACCOUNT,
                          broker1.RemoveAccountRequest(account), ctx())
        assert not core.engine.tokens(account.home_account_id).has_pop_key
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, account=account, pop_params=POP)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        account = await signed_in(core)  # the same person again: a new key
        after = verified_shr((await silent(core, account=account, pop_params=POP)).access_token)
        old_kid, new_kid = (shr.thumbprint(p["cnf"]["jwk"]) for p in (before, after))
        assert new_kid != old_kid and bound_kid(after) == new_kid
        await core.aclose()

    asyncio.run(scenario())


def test_interactive_pop_answers_an_shr_and_keeps_bearer_tokens_apart(
        authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person())
        token = await interactive(core, pop_params=POP)
        assert token.access_token_type is broker1.AccessTokenType.POP
        assert token.account is not None and token.account.username == USER
        payload = verified_shr(token.access_token)
        assert bound_kid(payload) == shr.thumbprint(payload["cnf"]["jwk"])
        bearer = await silent(core, account=token.account)  # the sign-in's own token
        assert "cnf" not in claims(bearer.access_token)
        pop = await silent(core, account=token.account, pop_params=POP)
        assert verified_shr(pop.access_token)["at"] == payload["at"]
        await core.aclose()

    asyncio.run(scenario())


def test_refusals_name_their_reason_and_bearer_scheme_is_bearer(authority, tmp_path: Path) -> None:
    async def refused(core: BrokerCore, account: broker1.Account, pop: broker1.PopParams,
                      *, interactive_too: bool = False) -> BrokerStatusError:
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, account=account, pop_params=pop)
        if interactive_too:
            with pytest.raises(BrokerStatusError) as again:
                await interactive(core, pop_params=pop)
            assert again.value.context == err.value.context
        assert err.value.status == broker1.Status.UNEXPECTED  # not 2: no sign-in can help
        return err.value

    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        account = await signed_in(core)
        mtls = dataclasses.replace(POP, authentication_scheme="mtls_pop")
        assert "mTLS" in (await refused(core, account, mtls, interactive_too=True)).context
        for name in ("http_method", "uri_host", "uri_path"):
            error = await refused(core, account, dataclasses.replace(POP, **{name: ""}))
            assert "popParams." in error.context
        for bad in ({"uri_host": "https://x.example"}, {"uri_path": "items"},
                    {"http_method": "GET /x"}):
            await refused(core, account, dataclasses.replace(POP, **bad))  # type: ignore[arg-type]
        foreign = shr.thumbprint(shr.public_jwk(shr.new_key()))
        error = await refused(core, account, dataclasses.replace(POP, kid=foreign))
        assert "client-held key" in error.context
        own = shr.thumbprint(claims((await silent(core, account=account, pop_params=POP))
                                    .access_token)["cnf"]["jwk"])
        echoed = await silent(core, account=account, pop_params=dataclasses.replace(POP, kid=own))
        assert verified_shr(echoed.access_token)  # the account's own kid is fine
        bearer = await silent(core, account=account,
                              pop_params=dataclasses.replace(POP, authentication_scheme="Bearer"))
        assert bearer.access_token_type is broker1.AccessTokenType.BEARER
        assert "cnf" not in claims(bearer.access_token)
        assert core._sign_ins == set()  # refused before any sign-in began
        await core.aclose()

    asyncio.run(scenario())


async def signed_request(core: BrokerCore, pop: broker1.PopParams) -> str:
    result = await core.handle(broker1.Method.GENERATE_SIGNED_HTTP_REQUEST,
                               broker1.SignedHttpRequestRequest("client", pop), ctx())
    assert isinstance(result, broker1.SignedHttpRequestResult)
    return result.signed_http_request


def test_generate_signed_http_request_signs_with_the_account_key(authority, tmp_path: Path) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person())
        account = await signed_in(core)
        pop = dataclasses.replace(POP, home_account_id=account.home_account_id)
        first = verified_shr(await signed_request(core, pop))  # the key is made here
        assert "at" not in first
        token = await silent(core, account=account, pop_params=POP)
        assert verified_shr(token.access_token)["cnf"] == first["cnf"]  # the same key
        second = verified_shr(await signed_request(core, pop))
        assert second["cnf"] == first["cnf"]
        for wrong, status in (
            (dataclasses.replace(pop, home_account_id=""), broker1.Status.API_CONTRACT_VIOLATION),
            (dataclasses.replace(pop, home_account_id="nobody.tenant"),
             broker1.Status.INTERACTION_REQUIRED),
            (dataclasses.replace(pop, authentication_scheme="mtls_pop"),
             broker1.Status.UNEXPECTED),
            (dataclasses.replace(pop, uri_host=""), broker1.Status.UNEXPECTED),
        ):
            with pytest.raises(BrokerStatusError) as err:
                await signed_request(core, wrong)
            assert err.value.status == status and err.value.context
        await core.handle(broker1.Method.REMOVE_ACCOUNT,
                          broker1.RemoveAccountRequest(account), ctx())
        with pytest.raises(BrokerStatusError) as err:
            await signed_request(core, pop)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        await core.aclose()

    asyncio.run(scenario())


def test_the_key_travels_in_the_snapshot_under_a_name_no_capability_set_has() -> None:
    from authbroker.daemon.partitions import POP_KEY, AccountTokens, partition_name

    assert partition_name(("#pop-key",)) != POP_KEY and partition_name(("#pop:plain",)) != \
        partition_name((), pop=True)
    assert partition_name(("CP1",), pop=True) != partition_name(("CP1",))
    old = AccountTokens({"plain": '{"AccessToken": {}}'})  # a snapshot from before PoP
    assert not old.has_pop_key and set(old.snapshot()) == {"plain"}
    key = old.pop_key()
    assert old.has_changed and old.pop_key() is key  # made once
    saved = old.snapshot()
    assert set(saved) == {"plain", POP_KEY} and "PRIVATE KEY" in saved[POP_KEY]
    back = AccountTokens(saved)
    assert back.pop_key().kid == key.kid and not back.has_changed
    assert "PRIVATE KEY" not in repr(back) + repr(key)
    assert back.clear() == 0 and not back.has_pop_key and back.snapshot() == {}
    broken = AccountTokens({"plain": '{"AccessToken": {}}', POP_KEY: "not a key"})
    assert broken.pop_key().kid != key.kid  # an unreadable key is replaced, never fatal
