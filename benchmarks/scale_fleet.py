"""One size of the scale benchmark: the local authority with N users, a private bus, our daemon
(file-key store in a temporary directory), populated through the daemon's public interface.

Population: N interactive sign-ins, ``workers`` at once (each asks for a user as its username,
which the daemon sends as ``login_hint``; :class:`~benchmarks.signin_relay.SignInRelay` signs
that user in), then ``scopes - 1`` more scopes per account by silent calls (each a new-scope
token: msal redeems the account's refresh token). Everything after that talks to the daemon
the same way: :class:`~authbroker.client.BrokerClient` over the bus, plus ``/proc`` for the
daemon process's memory and write counters.

Also here: :func:`msal_refreshes`, the baseline: the same forced refresh done in this process
by ``msal.PublicClientApplication`` against the same authority (one account, one scope).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

import msal
import requests

from authbroker import broker1
from authbroker.client import BrokerClient
from authbroker.devkit import processes, useragent
from authbroker.devkit.processes import AuthorityProcess, DaemonProcess
from benchmarks import rig
from benchmarks.harness import measure
from benchmarks.signin_relay import SignInRelay

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # Azure CLI's public client id
PASSWORD = "Bench-Passw0rd!"  # the generated users' (throwaway) password
CALL_TIMEOUT_S = 300.0
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


def scope(index: int) -> str:
    """The ``index``-th resource's scope (any resource works with the local authority)."""
    return f"https://bench-{index:04d}.example/.default"


@dataclasses.dataclass
class Population:
    sign_in_s: float
    scopes_s: float
    sign_ins: int
    silent_calls: int

    @property
    def total_s(self) -> float:
        return self.sign_in_s + self.scopes_s


def fan_out(bus: str, workers: int, items: Sequence[I], call: Callable[[BrokerClient, I], T],
            what: str = "") -> list[T]:
    """``call(client, item)`` for every item, ``workers`` at once, a client per thread; with
    ``what``, a progress line on stderr at every tenth of the items."""
    local = threading.local()
    clients: list[BrokerClient] = []
    counter, started, step = itertools.count(1), time.perf_counter(), max(1, len(items) // 10)

    def run(item: I) -> T:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = BrokerClient(bus=bus, timeout=CALL_TIMEOUT_S)
            clients.append(client)
        result = call(client, item)
        done = next(counter)  # atomic in CPython
        if what and done % step == 0:
            print(f"#   {what}: {done}/{len(items)} in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)
        return result

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="fan-out") as pool:
            return list(pool.map(run, items))
    finally:
        for client in clients:
            client.close()


class Fleet:
    """A populated daemon of ``size`` accounts × ``scopes`` scopes (a context manager)."""

    def __init__(self, tmp: Path, size: int, scopes: int, *, workers: int = 8) -> None:
        self.tmp, self.size, self.scopes, self.workers = tmp, size, scopes, workers
        *self.usernames, self.baseline_user = rig.write_users(tmp / "users.json", size + 1,
                                                              PASSWORD)  # one for msal alone
        self.store_dir = tmp / "store"
        self.accounts: list[broker1.Account] = []
        self._stack = ExitStack()

    def __enter__(self) -> Fleet:
        stack = self._stack.__enter__()
        try:
            self.authority = stack.enter_context(AuthorityProcess(
                self.tmp / "authority", "--users", str(self.tmp / "users.json"),
                log=self.tmp / "authority.log"))
            self.bus = stack.enter_context(rig.private_bus())
            self.relay = stack.enter_context(
                SignInRelay(self.tmp / "relay", PASSWORD, self.authority.ca_bundle,
                            workers=self.workers))
            env = processes.daemon_env(self.tmp, self.authority, bus=self.bus, ui="browser",
                                       browser=self.relay.browser_env())
            self.store_dir.mkdir(mode=0o700)
            self.daemon = stack.enter_context(DaemonProcess(
                self.bus, env, self.tmp, store=self.store_dir / "store.enc"))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        if kind is not None and hasattr(self, "daemon"):
            print(f"the daemon's log ends:\n{self.daemon.log_tail(2000)}", file=sys.stderr)
        self._stack.__exit__(None, None, None)

    def auth(self, account: broker1.Account, scope_index: int,
             **changes: object) -> broker1.AuthParameters:
        base = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(scope(scope_index),),
                                      account=account)
        return dataclasses.replace(base, **changes) if changes else base  # type: ignore[arg-type]

    def random_auth(self, rng: random.Random, **changes: object) -> broker1.AuthParameters:
        """A populated key: a random account and one of its scopes."""
        return self.auth(rng.choice(self.accounts), rng.randrange(self.scopes), **changes)

    def populate(self) -> Population:
        started = time.perf_counter()
        # The first sign-in alone: webbrowser's first open() in a process races with a
        # concurrent one (it publishes an empty browser list before filling it: "no browser").
        signed = fan_out(self.bus.address, 1, self.usernames[:1], self._sign_in)
        signed += fan_out(self.bus.address, self.workers, self.usernames[1:], self._sign_in,
                          "sign-ins" if self.size >= 100 else "")
        signed_in = time.perf_counter()
        self.accounts = signed
        if self.relay.failures or len(signed) != self.size:
            raise RuntimeError(f"sign-ins failed: {self.relay.failures[:3]}")
        keys = [(a, j) for a in signed for j in range(1, self.scopes)]
        fan_out(self.bus.address, self.workers, keys,
                lambda c, key: c.acquire_token_silently(self.auth(*key)),
                "new-scope calls" if self.size >= 100 else "")
        return Population(signed_in - started, time.perf_counter() - signed_in,
                          len(signed), len(keys))

    def _sign_in(self, client: BrokerClient, username: str) -> broker1.Account:
        auth = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(scope(0),),
                                      username=username)
        result = client.acquire_token_interactively(auth, on_device_code=None)
        if result.account is None or result.account.username.lower() != username:
            raise RuntimeError(f"signed in as {result.account} instead of {username}")
        return result.account

    def restart(self, rng: random.Random) -> float:
        """Stop the daemon; seconds from starting it again to its first answered silent call
        (a random cached key: not in any memo, read from the store)."""
        self.daemon.stop()
        with BrokerClient(bus=self.bus.address, timeout=CALL_TIMEOUT_S) as client:
            started = time.perf_counter()
            self.daemon.start()
            client.acquire_token_silently(self.random_auth(rng))
            return time.perf_counter() - started


def msal_refreshes(auth: AuthorityProcess, username: str, repeat: int) -> list[float]:
    """Seconds per forced refresh done in-process by msal: one account signed in by the
    scripted user agent (authorization code, PKCE), then ``acquire_token_silent`` with
    ``force_refresh`` (a refresh-token redemption at the same authority), ``repeat`` times."""
    http = requests.Session()
    http.verify = auth.ca_bundle
    http.trust_env = False
    app = msal.PublicClientApplication(CLIENT_ID, authority=f"{auth.authority}/organizations",
                                       instance_discovery=False, http_client=http)
    scopes = [scope(0)]
    flow = app.initiate_auth_code_flow(scopes, redirect_uri="http://localhost:1",
                                       login_hint=username, response_mode="form_post")
    answer = useragent.sign_in(flow["auth_uri"], username, PASSWORD, session=http, deliver=False)
    signed = app.acquire_token_by_auth_code_flow(flow, answer.fields)
    if "access_token" not in signed:
        raise RuntimeError(f"msal could not sign in: {signed.get('error')}")
    account = app.get_accounts(username=username)[0]

    def refresh() -> None:
        result = app.acquire_token_silent_with_error(scopes, account, force_refresh=True)
        if not result or "access_token" not in result:
            raise RuntimeError("msal's forced refresh failed")

    return measure(refresh, repeat=repeat)
