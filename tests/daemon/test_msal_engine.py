"""The token engine through the broker: one msal cache per capability set (CAE apart from plain),
refresh tokens shared and spread between them, one account's refreshes taking turns, claims
challenges, and msal's error answers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msal
import pytest

from authbroker import broker1
from authbroker.errors import BrokerStatusError
from fixtures.authority import start_authority
from fixtures.broker_core import (
    CONSUMER_TENANT,
    CP1,
    PERSONAL,
    USER,
    SlowTokenEndpoint,
    interactive,
    make_core,
    person,
    silent,
    xms_cc,
)


def test_claims_challenge_bypasses_cache_but_capabilities_do_not(authority) -> None:
    cp1 = '{"access_token":{"xms_cc":{"values":["CP1"]}}}'
    challenge = json.dumps({"access_token": {"nbf": {"essential": True,
                                                     "value": str(int(time.time()))}}})

    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        first = await interactive(core, decoded_claims=cp1)
        cached = await silent(core, decoded_claims=cp1)
        assert cached.access_token == first.access_token
        fresh = await silent(core, decoded_claims=challenge)
        assert fresh.access_token != first.access_token
        await core.aclose()

    asyncio.run(scenario())


def test_cae_and_plain_tokens_never_mix(authority, tmp_path: Path) -> None:
    store = tmp_path / "store.enc"

    async def scenario() -> None:
        core = make_core(authority.authority, store, person())
        plain = await interactive(core)
        assert xms_cc(plain) is None
        assert xms_cc(await silent(core)) is None
        # a CAE request after the plain token: a CP1 token, from the same sign-in's refresh token
        cae = await silent(core, decoded_claims=CP1)
        assert xms_cc(cae) == ["CP1"]
        assert cae.account and cae.account.username == USER
        # each kind is then served from its own cache (and the hot path) without mixing
        again = await silent(core)
        assert again.access_token == plain.access_token and xms_cc(again) is None
        cae_again = await silent(core, decoded_claims=CP1)
        assert cae_again.access_token == cae.access_token
        # refresh tokens rotate (and a replayed one revokes them all): each cache's refresh
        # passes the new one on, so both kinds keep refreshing, in any order
        for claims in ("", CP1, CP1, "", ""):
            forced = await silent(core, decoded_claims=claims, force_refresh=True)
            assert xms_cc(forced) == (["CP1"] if claims else None)
        plain = await silent(core)
        cae = await silent(core, decoded_claims=CP1)
        await core.aclose()

        restarted = make_core(authority.authority, store)  # nobody to sign in
        after_plain = await silent(restarted)
        after_cae = await silent(restarted, decoded_claims=CP1)
        assert after_plain.access_token == plain.access_token
        assert after_cae.access_token == cae.access_token
        assert xms_cc(await silent(restarted, decoded_claims=CP1, force_refresh=True)) == ["CP1"]
        assert xms_cc(await silent(restarted, force_refresh=True)) is None
        await restarted.aclose()

    asyncio.run(scenario())


def test_a_cae_sign_in_then_a_plain_request_gets_a_plain_token(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        cae = await interactive(core, decoded_claims=CP1)
        assert xms_cc(cae) == ["CP1"]
        plain = await silent(core)
        assert xms_cc(plain) is None
        assert xms_cc(await silent(core, decoded_claims=CP1)) == ["CP1"]
        # a new sign-in through the plain cache: the CAE cache refreshes with its refresh token
        await interactive(core, prompt="login")
        assert xms_cc(await silent(core, decoded_claims=CP1, force_refresh=True)) == ["CP1"]
        assert xms_cc(await silent(core, force_refresh=True)) is None
        # signing out forgets the account in both caches
        assert cae.account
        await core.remove_account(cae.account.home_account_id)
        for claims in ("", CP1):
            with pytest.raises(BrokerStatusError) as err:
                await silent(core, account=cae.account, decoded_claims=claims)
            assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        await core.aclose()

    asyncio.run(scenario())


def test_concurrent_plain_and_cae_refreshes_of_one_account(tmp_path: Path, authority) -> None:
    # 60 s tokens: every call refreshes. Refresh tokens rotate and a replayed one revokes the
    # sign-in, so one account's refreshes must take turns, whichever cache they are for.
    with start_authority(tmp_path, "--token-lifetime", "60", ca_from=authority) as short:

        async def scenario() -> None:
            core = make_core(short.authority, None, person(),
                             http_client=SlowTokenEndpoint(0.2))
            await interactive(core)
            for _ in range(2):
                results = await asyncio.gather(
                    silent(core), silent(core, decoded_claims=CP1),
                    silent(core, scopes=("https://management.azure.com/.default",)),
                )
                assert [xms_cc(r) for r in results] == [None, ["CP1"], None]
            await core.aclose()

        asyncio.run(scenario())


def test_revoked_refresh_token_asks_for_interaction(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person())
        token = await interactive(core)
        assert token.account  # as if the authority had revoked the refresh token
        cache = core.engine.partition(token.account.home_account_id)
        for rt in list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)):
            cache.update_rt(rt, "not-a-refresh-token")
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, account=token.account, force_refresh=True)
        assert err.value.status == broker1.Status.INTERACTION_REQUIRED
        assert err.value.error_code > 0  # the AADSTS number
        assert "not-a-refresh-token" not in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_msa_passthrough_marker_reaches_the_authority(authority) -> None:
    async def scenario() -> None:
        core = make_core(authority.authority, None, person(PERSONAL))
        token = await interactive(
            core, extra_query={"msal_client_sku": "MSAL.Python",
                               "msal_request_type": "consumer_passthrough"},
        )
        assert token.account and token.account.username == PERSONAL
        assert token.account.realm == CONSUMER_TENANT
        # extra parameters must not split msal's cache: a silent call is served from it
        assert (await silent(core)).access_token == token.access_token
        await core.aclose()

    asyncio.run(scenario())
