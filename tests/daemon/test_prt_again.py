"""A registered device left without a PRT gets one again: after removeAccount and a new
sign-in of its account, and at the start of a daemon whose PRT request never completed (a
crash or a failure right after the device was stored). Broker core, real local authority,
real msal, the real store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from authbroker import broker1
from authbroker.daemon.broker import BrokerCore
from daemon.test_device_core import register
from daemon.test_prt_core import APP, account_of, claims
from fixtures.broker_core import USER, ctx, interactive, make_core, person, silent


async def prt_becomes(core: BrokerCore, hid: str, want: str, within_s: float = 10) -> None:
    """The account's PRT state reaches ``want`` (the request runs in the background)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while core.prt.state(hid)["prt"] != want:
        assert asyncio.get_running_loop().time() < deadline, core.prt.state(hid)
        await asyncio.sleep(0.05)


def test_a_sign_in_after_remove_account_brings_the_prt_back(authority, tmp_path: Path) -> None:
    async def run() -> None:
        core = make_core(authority.authority, tmp_path / "store.enc", person(USER))
        device = await register(core)
        account = account_of(core)
        hid = account.home_account_id
        await core.handle(broker1.Method.REMOVE_ACCOUNT,
                          broker1.RemoveAccountRequest(account, APP), ctx())
        assert core.prt.state(hid)["prt"] == "none"
        again = await interactive(core)  # the same person signs in again, to some app
        assert again.account is not None and again.account.home_account_id == hid
        await prt_becomes(core, hid, "active")
        token = await silent(core, client_id=APP, account=again.account)
        assert claims(token.access_token)["deviceid"] == device.device_id
        assert core.prt.exchanges == 1
        await core.aclose()

    asyncio.run(run())


def test_a_device_stored_without_its_prt_gets_one_at_the_next_start(
        authority, tmp_path: Path) -> None:
    path = tmp_path / "store.enc"

    async def registered_but_no_prt() -> str:
        core = make_core(authority.authority, path, person(USER))
        await register(core)
        hid = account_of(core).home_account_id
        await core.prt.forget(hid)  # as if the PRT request had died with the daemon
        assert core.prt.state(hid)["prt"] == "none"
        await core.aclose()
        return hid

    hid = asyncio.run(registered_but_no_prt())

    async def restarted() -> None:
        core = make_core(authority.authority, path)  # nobody to sign in: not needed
        await core.start()
        await prt_becomes(core, hid, "active")
        token = await silent(core, client_id=APP, account=account_of(core))
        assert "deviceid" in claims(token.access_token)
        await core.aclose()

    asyncio.run(restarted())
