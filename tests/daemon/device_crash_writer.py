"""A broker core in a process of its own, for tests/daemon/test_device_crash.py, against the
real local authority, real msal and the real record store at STORE:

    python device_crash_writer.py register|stream|unregister|unregister-local AUTHORITY STORE
    python device_crash_writer.py stream AUTHORITY STORE KIND

``register``: registers the device (a scripted sign-in), prints it and dies by SIGKILL at once
(no aclose, no later flush). ``unregister[-local]``: loads the store, unregisters the device it
holds, prints, dies the same way. ``stream``: registers (and signs in a second account) unless
the store holds a device already, then writes device state, the PRT and account tokens in a
loop until it is killed: each step is printed as ``do <kind>`` before and ``ok <kind> ...``
once its reply came (see :data:`CYCLE`); with KIND, it dies by SIGKILL itself right after it
acknowledged a step of that kind (once a whole cycle is done).

Only ids reach stdout: device, account and client ids, a token's ``uti`` (its unique id) and a
PRT's fingerprint (12 hex digits of its SHA-256, as the authority keys its PRT records).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import jwt

from authbroker import broker1
from authbroker.daemon.broker import BrokerCore
from authbroker.errors import BrokerStatusError
from daemon.test_device_core import device_status, register, unregister
from fixtures.broker_core import SECOND, USER, interactive, make_core, person, silent

#: The stream's steps, in turn: ``prt`` serves a new non-family client from the PRT (renewed
#: first: renewal is due at every use); ``refresh`` refreshes the second account's tokens;
#: ``disable`` / ``enable`` mark the device (DeviceCalls.mark) and then refresh, so that a
#: flush holding the new state has landed before the step is acknowledged.
CYCLE = ("prt", "refresh", "prt", "disable", "refresh", "enable")


def say(*words: object) -> None:
    print(*words, flush=True)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def uti(token: broker1.TokenResult) -> str:
    return str(jwt.decode(token.access_token, options={"verify_signature": False})["uti"])


def device_claim(token: broker1.TokenResult) -> str:
    return str(jwt.decode(token.access_token, options={"verify_signature": False})["deviceid"])


def fingerprint(core: BrokerCore, home_account_id: str) -> str:
    """The account's PRT as a short non-secret id ("-" when it has none)."""
    state = core.prt.kept.peek(home_account_id)
    return "-" if state is None else hashlib.sha256(state.prt.encode()).hexdigest()[:12]


class Person:
    """The core's browser: a person who signs in as whoever ``username`` says."""

    def __init__(self) -> None:
        self.username = USER

    def __call__(self, url: str) -> bool:
        return bool(person(self.username)(url))


async def register_then_die(authority: str, path: Path) -> None:
    core = make_core(authority, path, person(USER))
    device = await register(core)
    assert device.state == "registered" and device.prt == "active", device
    say("registered", device.device_id, device.home_account_id)
    die()


async def unregister_then_die(authority: str, path: Path, local_only: bool) -> None:
    core = make_core(authority, path)  # nobody to sign in: unregistering needs none
    device = await device_status(core)
    assert device is not None and device.prt == "active", device
    result = await unregister(core, local_only=local_only)
    assert result.deleted_at_authority == (not local_only), result.reason
    assert await device_status(core) is None
    say("unregistered", device.device_id, device.home_account_id)
    die()


async def refresh(core: BrokerCore, who: Person, home_account_id: str) -> list[str]:
    """The second account's tokens refreshed (the refresh token rotates); when a kill lost
    the rotated one (the authority answered, the broker died before it committed), the
    second account signs in again."""
    try:
        token = await silent(core, account=core.accounts.account(home_account_id),
                             force_refresh=True)
    except BrokerStatusError as exc:
        if exc.status != broker1.Status.INTERACTION_REQUIRED:
            raise
        who.username = SECOND
        token = await interactive(core)
        return [uti(token), "signed-in-again"]
    return [uti(token)]


async def stream(authority: str, path: Path, die_after: str | None) -> None:
    who = Person()
    core = make_core(authority, path, who)
    core.prt.renew_after_s = 0.0  # every use finds the PRT old: a PRT write per "prt" step
    device = await device_status(core)
    start = 0
    if device is None:
        device = await register(core)
        assert device.prt == "active", device
        who.username = SECOND
        second = await interactive(core)
        assert second.account is not None
        hid2 = second.account.home_account_id
        say("registered", device.device_id, device.home_account_id,
            fingerprint(core, device.home_account_id), hid2, uti(second))
    else:
        hid2 = next(e["homeAccountId"] for e in core.accounts.entries()
                    if e["username"] == SECOND)
        cached = await silent(core, account=core.accounts.account(hid2))
        say("loaded", device.device_id, device.state,
            fingerprint(core, device.home_account_id), uti(cached))
        if device.state == "disabled":
            start = CYCLE.index("enable")
    hid = device.home_account_id
    step = start
    while True:
        if step - start > len(CYCLE) and CYCLE[(step - 1) % len(CYCLE)] == die_after:
            die()
        kind = CYCLE[step % len(CYCLE)]
        step += 1
        if kind == "prt":
            app = str(uuid.uuid4())
            say("do", kind, app)
            token = await silent(core, client_id=app, account=core.accounts.account(hid))
            assert device_claim(token) == device.device_id
            say("ok", kind, app, fingerprint(core, hid))
            continue
        say("do", kind)
        if kind != "refresh":
            core.devices.mark("disabled" if kind == "disable" else "registered")
        say("ok", kind, *await refresh(core, who, hid2))


def main(argv: list[str]) -> Any:
    mode, authority, path = argv[1], argv[2], Path(argv[3])
    if mode == "register":
        return asyncio.run(register_then_die(authority, path))
    if mode in ("unregister", "unregister-local"):
        return asyncio.run(unregister_then_die(authority, path, mode == "unregister-local"))
    if mode == "stream":
        return asyncio.run(stream(authority, path, argv[4] if len(argv) > 4 else None))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
