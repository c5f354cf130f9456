"""Where requests go (the configured authority, msal's port-less authority, discovery), the
claims split, and an authority that cannot be reached named with its setting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from authbroker import broker1, config
from authbroker.config import Settings
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.routing import PublicCloudRoute, resolve_authority, split_claims
from authbroker.errors import BrokerStatusError, ConfigurationError
from fixtures.authority import start_authority
from fixtures.broker_core import (
    CLIENT_ID,
    OTHER_CLIENT_ID,
    SCOPE,
    interactive,
    make_core,
    nobody,
    person,
    silent,
)


@pytest.mark.parametrize(
    ("requested", "configured", "expected", "discovery"),
    [
        # msal strips the port: the configured authority's host without a port goes there
        ("https://127.0.0.1/organizations", "https://127.0.0.1:8443",
         "https://127.0.0.1:8443/organizations", False),
        ("https://127.0.0.1/8eaef023-2b34-4da1-9baa-8bc8c9d6a490", "https://127.0.0.1:8443",
         "https://127.0.0.1:8443/8eaef023-2b34-4da1-9baa-8bc8c9d6a490", False),
        ("", "https://127.0.0.1:8443", "https://127.0.0.1:8443/organizations", False),
        ("https://127.0.0.1", "https://127.0.0.1:8443/common", "https://127.0.0.1:8443/common",
         False),
        # anything else goes as given; discovery only for Microsoft's hosts
        ("https://127.0.0.1:9000/common", "https://127.0.0.1:8443",
         "https://127.0.0.1:9000/common", False),
        ("https://login.microsoftonline.com/common", "https://127.0.0.1:8443",
         "https://login.microsoftonline.com/common", True),
        ("", None, "https://login.microsoftonline.com/organizations", True),
        ("https://idp.example/t1", None, "https://idp.example/t1", False),
    ],
)
def test_where_requests_go(requested: str, configured: str | None, expected: str,
                           discovery: bool) -> None:
    target = resolve_authority(requested, configured)
    assert (target.authority, target.instance_discovery) == (expected, discovery)


def test_claims_split_into_capabilities_and_challenge() -> None:
    cp1 = {"access_token": {"xms_cc": {"values": ["CP1"]}}}
    assert split_claims(json.dumps(cp1)).capabilities == ("CP1",)
    assert split_claims(json.dumps(cp1)).challenge is None
    both = {"access_token": {"xms_cc": {"values": ["CP1"]}, "nbf": {"essential": True}}}
    split = split_claims(json.dumps(both))
    assert split.capabilities == ("CP1",)
    assert json.loads(split.challenge or "") == {"access_token": {"nbf": {"essential": True}}}
    assert split_claims("") == split_claims("  ")
    with pytest.raises(BrokerStatusError) as err:
        split_claims("{not json")
    assert err.value.status == broker1.Status.API_CONTRACT_VIOLATION


def test_unreachable_authority_names_the_setting(authority) -> None:
    async def scenario() -> None:
        # no configured authority: msal's port-less authority goes to 127.0.0.1:443
        core = BrokerCore(None, Settings(authority=None, ui="browser", backend=None),
                          open_url=nobody)
        with pytest.raises(BrokerStatusError) as err:
            await interactive(core)
        assert err.value.status in (3, 5)  # NoNetwork / ServerTemporarilyUnavailable
        assert "AUTHBROKER_AUTHORITY" in err.value.context
        assert "https://127.0.0.1/organizations" in err.value.context
        await core.aclose()

    asyncio.run(scenario())


def test_authority_that_went_away_is_named_with_the_setting(tmp_path: Path, authority) -> None:
    async def sign_in_then(core: BrokerCore, stop: Callable[[], None]) -> BrokerStatusError:
        await interactive(core)
        stop()
        with pytest.raises(BrokerStatusError) as err:
            await silent(core, force_refresh=True)
        return err.value

    with start_authority(tmp_path, ca_from=authority) as gone:
        core = make_core(gone.authority, None, person())
        error = asyncio.run(sign_in_then(core, lambda: (gone.process.terminate(),
                                                         gone.process.wait(10))))
    assert error.status == broker1.Status.NO_NETWORK
    assert "AUTHBROKER_AUTHORITY" in error.context
    assert gone.authority in error.context
    asyncio.run(core.aclose())


# -- the routing setting (AUTHBROKER_ROUTE_PUBLIC_CLOUD) ------------------------------------------

EDGE = "d7b530a4-7680-4c23-a8bf-c52c121d2e87"  # Microsoft Edge: a family client


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("https://login.microsoftonline.com/common", "https://127.0.0.1:8443/common"),
        ("https://login.windows.net/8eaef023-2b34-4da1-9baa-8bc8c9d6a490",
         "https://127.0.0.1:8443/8eaef023-2b34-4da1-9baa-8bc8c9d6a490"),
        ("https://LOGIN.microsoft.com/organizations/", "https://127.0.0.1:8443/organizations"),
        ("https://sts.windows.net/", "https://127.0.0.1:8443/organizations"),
        # not public cloud: untouched (national clouds, other IdPs, the private one itself)
        ("https://login.microsoftonline.us/common", "https://login.microsoftonline.us/common"),
        ("https://idp.example/t1", "https://idp.example/t1"),
        ("https://127.0.0.1/organizations", "https://127.0.0.1/organizations"),
        ("", ""),
    ],
)
def test_the_route_keeps_the_tenant(requested: str, expected: str) -> None:
    route = PublicCloudRoute.of("https://127.0.0.1:8443", True)
    assert route is not None
    routed = route.apply(broker1.AuthParameters(CLIENT_ID, (SCOPE,), authority=requested))
    assert routed.authority == expected
    # and where the routed request then goes: the private authority, no instance discovery
    target = resolve_authority(routed.authority, "https://127.0.0.1:8443")
    if requested and "127.0.0.1:8443" in expected:
        assert (target.authority, target.instance_discovery) == (expected, False)


def test_the_route_is_off_by_default_and_needs_a_private_authority(monkeypatch) -> None:
    monkeypatch.delenv(config.ROUTE_PUBLIC_CLOUD, raising=False)
    monkeypatch.setenv(config.CONFIG, "/nonexistent/config.toml")
    assert Settings.load().route_public_cloud is False
    assert PublicCloudRoute.of("https://127.0.0.1:8443", False) is None
    for value, on in (("1", True), ("true", True), ("ON", True), ("0", False), ("no", False)):
        monkeypatch.setenv(config.ROUTE_PUBLIC_CLOUD, value)
        assert Settings.load().route_public_cloud is on
    monkeypatch.setenv(config.ROUTE_PUBLIC_CLOUD, "maybe")
    with pytest.raises(ConfigurationError) as bad:
        Settings.load()
    assert config.ROUTE_PUBLIC_CLOUD in str(bad.value) and "route_public_cloud" in str(bad.value)
    for private in (None, "", "http://127.0.0.1:8443"):
        with pytest.raises(ConfigurationError) as missing:
            PublicCloudRoute.of(private, True)
        assert config.ROUTE_PUBLIC_CLOUD in str(missing.value)
        assert config.AUTHORITY in str(missing.value)
    with pytest.raises(ConfigurationError):  # the core refuses to start with it
        BrokerCore(None, Settings(authority=None, ui="browser", backend=None,
                                  route_public_cloud=True))


def test_the_config_file_turns_the_route_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(config.ROUTE_PUBLIC_CLOUD, raising=False)
    path = tmp_path / "config.toml"
    path.write_text('authority = "https://127.0.0.1:8443"\nroute_public_cloud = true\n')
    monkeypatch.setenv(config.CONFIG, str(path))
    assert Settings.load().route_public_cloud is True


def test_offline_microsoft_request_with_routing_off_names_the_routing_setting(
        authority, monkeypatch) -> None:
    # offline: every connection but the local authority's goes to a closed port
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async def scenario() -> BrokerStatusError:
        core = make_core(authority.authority, None)
        try:
            with pytest.raises(BrokerStatusError) as err:
                await interactive(core, client_id=EDGE,
                                  authority="https://login.microsoftonline.com/common")
            return err.value
        finally:
            await core.aclose()

    error = asyncio.run(scenario())
    assert error.status in (3, 5)
    assert config.ROUTE_PUBLIC_CLOUD in error.context
    assert "login.microsoftonline.com" in error.context
    assert "check the network" in error.context


def test_edge_with_the_public_cloud_authority_gets_tokens_when_routed(authority) -> None:
    async def scenario() -> tuple[broker1.TokenResult, broker1.TokenResult]:
        core = BrokerCore(None, Settings(authority=authority.authority, ui="browser",
                                         backend=None, route_public_cloud=True),
                          sign_in_timeout=30, open_url=person())
        try:
            signed_in = await interactive(core, client_id=EDGE,
                                          authority="https://login.microsoftonline.com/common")
            assert signed_in.account is not None
            again = await silent(
                core, client_id=EDGE, account=signed_in.account,
                authority=f"https://login.microsoftonline.com/{signed_in.account.realm}")
            return signed_in, again
        finally:
            await core.aclose()

    signed_in, again = asyncio.run(scenario())
    for result in (signed_in, again):
        claims = jwt.decode(result.access_token, options={"verify_signature": False})
        assert claims["appid" if "appid" in claims else "azp"] == EDGE
        assert result.account is not None
        assert result.account.environment == "127.0.0.1"  # signed in at the private authority


def test_a_non_family_app_without_its_own_sign_in_is_told_how_to_sign_in(authority) -> None:
    async def scenario() -> BrokerStatusError:
        core = make_core(authority.authority, None, person())
        try:
            signed_in = await interactive(core)  # Azure CLI's client id: a family member
            with pytest.raises(BrokerStatusError) as err:
                await silent(core, client_id=OTHER_CLIENT_ID, account=signed_in.account)
            return err.value
        finally:
            await core.aclose()

    error = asyncio.run(scenario())
    assert error.status == broker1.Status.INTERACTION_REQUIRED
    assert f"authbroker login --client-id {OTHER_CLIENT_ID}" in error.context
