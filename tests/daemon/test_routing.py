"""Where requests go (the configured authority, msal's port-less authority, discovery), the
claims split, and an authority that cannot be reached named with its setting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from authbroker import broker1
from authbroker.config import Settings
from authbroker.daemon.broker import BrokerCore
from authbroker.daemon.routing import resolve_authority, split_claims
from authbroker.errors import BrokerStatusError
from fixtures.authority import start_authority
from fixtures.broker_core import (
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
