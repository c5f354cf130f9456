"""The scale benchmark's loads on a populated daemon: client processes calling at once, cached
calls made while refreshes stream (a stalled event loop, seen from outside), a burst of 100
simultaneous cached calls (``busy`` refusals counted).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
from typing import Any

from authbroker import broker1
from authbroker.client import AsyncBrokerClient, BrokerClient
from authbroker.errors import BrokerStatusError
from benchmarks.harness import percentile_ms
from benchmarks.scale_fleet import CALL_TIMEOUT_S, CLIENT_ID, Fleet, scope

CALLS_PER_CLIENT, ROUNDS = 150, 3
STALL_S, REFRESH_STREAMS, HOT_PAUSE_S = 4.0, 4, 0.002
BURST, BURST_CONNECTIONS, BURSTS = 100, 10, 5


def ready() -> None:
    """Pool initializer: each process imports this module (and the client) before any round."""


def _client_process(bus: str, accounts: list[broker1.Account], scopes: int, seed: int,
                    start_at: float) -> tuple[float, float]:
    """One client process: CALLS_PER_CLIENT cached calls, a random account and scope each."""
    rng = random.Random(seed)
    keys = [broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(scope(j),),
                                   account=a) for a in accounts for j in range(scopes)]
    with BrokerClient(bus=bus, timeout=CALL_TIMEOUT_S) as client:
        client.acquire_token_silently(keys[0])  # connected and warm before the common start
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        for _ in range(CALLS_PER_CLIENT):
            client.acquire_token_silently(rng.choice(keys))
        return began, time.time()


def throughput(pool: Any, fleet: Fleet, clients: int, rng: random.Random) -> dict[str, float]:
    """Cached calls/s of ``clients`` processes at once (median of ROUNDS rounds); a round
    whose clients did not start within 0.2 s of each other is run again (twice at most)."""
    rates = []
    for _ in range(ROUNDS):
        for _attempt in range(3):
            start_at = time.time() + 1.5 + len(fleet.accounts) * fleet.scopes / 20000
            spans = pool.starmap(_client_process, [
                (fleet.bus.address, fleet.accounts, fleet.scopes, rng.randrange(2**32), start_at)
                for _ in range(clients)])
            began, ended = [b for b, _ in spans], [e for _, e in spans]
            if max(began) - min(began) <= 0.2:
                break
        rates.append(clients * CALLS_PER_CLIENT / (max(ended) - min(began)))
    return {"cached_many": statistics.median(rates)}


def _hot_calls(client: BrokerClient, hot: broker1.AuthParameters, seconds: float) -> list[float]:
    """Latencies of the memo's key, called every HOT_PAUSE_S for ``seconds``."""
    samples: list[float] = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        began = time.perf_counter()
        client.acquire_token_silently(hot)
        samples.append(time.perf_counter() - began)
        time.sleep(HOT_PAUSE_S)
    return samples


def stall(fleet: Fleet, rng: random.Random) -> dict[str, float]:
    """Worst (and p99) latency of a hot cached call: quiet, then while REFRESH_STREAMS
    clients force refreshes of random accounts back to back."""
    hot = fleet.auth(fleet.accounts[0], 0)
    stop = threading.Event()
    done = [0] * REFRESH_STREAMS

    def refreshes(slot: int, seed: int) -> None:
        mine = random.Random(seed)
        with BrokerClient(bus=fleet.bus.address, timeout=CALL_TIMEOUT_S) as c:
            while not stop.is_set():
                c.acquire_token_silently(fleet.random_auth(mine, force_refresh=True))
                done[slot] += 1

    with BrokerClient(bus=fleet.bus.address, timeout=CALL_TIMEOUT_S) as client:
        client.acquire_token_silently(hot)
        quiet = _hot_calls(client, hot, STALL_S / 2)
        streams = [threading.Thread(target=refreshes, args=(i, rng.randrange(2**32)))
                   for i in range(REFRESH_STREAMS)]
        for t in streams:
            t.start()
        time.sleep(0.3)  # the streams are running
        loud = _hot_calls(client, hot, STALL_S)
        stop.set()
        for t in streams:
            t.join()
    return {"stall": max(loud) * 1000, "stall_p99": percentile_ms(loud, 99),
            "stall_quiet": max(quiet) * 1000, "stall_refreshes": sum(done) / STALL_S}


async def _bursts(fleet: Fleet, rng: random.Random) -> list[int]:
    """``busy`` refusals in each of BURSTS bursts of BURST cached calls sent at once."""
    clients = [AsyncBrokerClient(bus=fleet.bus.address, timeout=CALL_TIMEOUT_S)
               for _ in range(BURST_CONNECTIONS)]
    refused = []
    try:
        for c in clients:
            await c.acquire_token_silently(fleet.random_auth(rng))  # connected, warm
        for _ in range(BURSTS):
            calls = [clients[i % len(clients)].acquire_token_silently(fleet.random_auth(rng))
                     for i in range(BURST)]
            answers = await asyncio.gather(*calls, return_exceptions=True)
            busy = [a for a in answers if isinstance(a, BrokerStatusError) and "busy" in str(a)]
            other = [a for a in answers if isinstance(a, BaseException) and a not in busy]
            if other:
                raise other[0]
            refused.append(len(busy))
    finally:
        for c in clients:
            await c.aclose()
    return refused


def burst(fleet: Fleet, rng: random.Random) -> dict[str, float]:
    refused = asyncio.run(_bursts(fleet, rng))
    return {"busy": max(refused), "busy_total": sum(refused)}
