"""The daemon at scale (issue 11): what a call costs with 1, 100 (and on request 1,000) accounts.

``python -m benchmarks scale [--accounts 1,100] [--scopes 10] [--clients 8]``

At each size a fresh private bus, local authority (a generated users file) and daemon
(file-key store in a temporary directory) are populated through the daemon's public interface
(:mod:`benchmarks.scale_fleet`: N sign-ins, several at once, then ``scopes`` per account by
silent calls), then measured from outside, a random account and scope each call:

* a forced refresh; a token for a new scope; a cached silent call with 1 client and with
  ``clients`` client processes (random keys; the same key each time, the memo's, as a
  reference); getAccounts; one account's removal;
* bytes the daemon process wrote per refresh (``/proc/<pid>/io`` ``write_bytes``, its store's
  disk writes and its log, around a run of refreshes);
* the worst latency of a cached call (the memo's key) while refresh streams run: an event-loop
  stall seen from outside; 100 cached calls sent at once (``busy`` refusals counted);
* the daemon's RSS after the refresh runs; its start (a restart on the populated store) to its
  first answered silent call;
* the same forced refresh done in-process by msal (one account): the baseline of "daemon ÷ msal".

The report: one table of every figure by size, then the issue's goals at the largest size, as
ratios to the smallest size of the same run (normally 1 account).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from authbroker.client import BrokerClient
from benchmarks import rig, scale_loads
from benchmarks.harness import Row, grid, measure, median_ms, percentile_ms, report
from benchmarks.scale_fleet import CALL_TIMEOUT_S, CLIENT_ID, Fleet, msal_refreshes
from benchmarks.scale_goals import SPECS, goal_rows

REFRESHES, NEW_SCOPES, CACHED, LISTINGS, REMOVALS, RESTARTS = 40, 20, 300, 30, 5, 3
BYTES_REFRESHES = 20
SEED = 11


def _calls(fleet: Fleet, client: BrokerClient, rng: random.Random) -> dict[str, float]:
    """Single-client latencies (ms): cached (random keys, and the memo's), getAccounts,
    forced refresh, new scope."""
    listed = client.get_accounts(CLIENT_ID)
    if len(listed) != fleet.size:
        raise RuntimeError(f"getAccounts lists {len(listed)} accounts, not {fleet.size}")
    silent = client.acquire_token_silently
    hot = fleet.auth(fleet.accounts[0], 0)
    cached = measure(lambda: silent(fleet.random_auth(rng)), repeat=CACHED)
    memo = measure(lambda: silent(hot), repeat=CACHED)
    listing = measure(lambda: client.get_accounts(CLIENT_ID), repeat=LISTINGS)
    refresh = measure(lambda: silent(fleet.random_auth(rng, force_refresh=True)),
                      repeat=REFRESHES, warmup=2)
    fresh = iter(range(fleet.scopes, fleet.scopes + NEW_SCOPES + 1))
    new_scope = measure(lambda: silent(fleet.auth(rng.choice(fleet.accounts), next(fresh))),
                        repeat=NEW_SCOPES, warmup=1)
    return {"cached": median_ms(cached), "cached_p95": percentile_ms(cached, 95),
            "memo": median_ms(memo), "accounts": median_ms(listing),
            "refresh": median_ms(refresh), "refresh_p95": percentile_ms(refresh, 95),
            "new_scope": median_ms(new_scope), "new_scope_p95": percentile_ms(new_scope, 95)}


def _bytes_per_refresh(fleet: Fleet, client: BrokerClient, rng: random.Random) -> dict[str, float]:
    """KB the daemon process wrote per forced refresh (disk: ``write_bytes``; ``write()``
    calls: ``wchar``), waiting for its writes to settle (a store may coalesce them)."""
    pid = fleet.daemon.pid
    _settle(pid)
    before = rig.io_counters(pid)
    for _ in range(BYTES_REFRESHES):
        client.acquire_token_silently(fleet.random_auth(rng, force_refresh=True))
    after = _settle(pid)
    per = {key: (after[key] - before[key]) / BYTES_REFRESHES / 1024
           for key in ("write_bytes", "wchar")}
    return {"bytes": per["write_bytes"], "wchar": per["wchar"],
            "store": rig.dir_bytes(fleet.store_dir) / 2**20}


def _settle(pid: int, quiet_s: float = 0.5, limit_s: float = 10.0) -> dict[str, int]:
    """The daemon's I/O counters once they stayed still for ``quiet_s``."""
    deadline = time.monotonic() + limit_s
    last = rig.io_counters(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = rig.io_counters(pid)
        if now["wchar"] == last["wchar"]:
            return now
        last = now
    return last


def _removals(fleet: Fleet, client: BrokerClient) -> dict[str, float]:
    """ms per removeAccount (the last accounts; no later call picks them)."""
    gone = fleet.accounts[-REMOVALS:] if fleet.size > REMOVALS else fleet.accounts[-1:]
    del fleet.accounts[-len(gone):]
    victims = iter(gone)
    samples = measure(lambda: client.remove_account(next(victims), CLIENT_ID),
                      repeat=len(gone), warmup=0)
    if fleet.accounts and len(client.get_accounts(CLIENT_ID)) != len(fleet.accounts):
        raise RuntimeError("removeAccount did not remove the accounts")
    return {"removal": median_ms(samples)}


def _size(pool: object, tmp: Path, size: int, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(SEED + size)
    with Fleet(tmp, size, args.scopes, workers=args.clients) as fleet:
        grown = fleet.populate()
        print(f"# {size} accounts × {args.scopes} scopes populated in {grown.total_s:.1f} s "
              f"(sign-ins {grown.sign_in_s:.1f} s, {grown.silent_calls} new-scope calls "
              f"{grown.scopes_s:.1f} s)", file=sys.stderr, flush=True)
        figures = {"size": size, "population": grown.total_s, "sign_ins": grown.sign_in_s,
                   "scopes": grown.scopes_s}
        # msal's user has no history at the authority (refresh streams leave plenty)
        figures["msal"] = median_ms(msal_refreshes(fleet.authority, fleet.baseline_user,
                                                   REFRESHES))
        with BrokerClient(bus=fleet.bus.address, timeout=CALL_TIMEOUT_S) as client:
            figures |= _calls(fleet, client, rng)
            figures |= scale_loads.throughput(pool, fleet, args.clients, rng)
            figures |= _bytes_per_refresh(fleet, client, rng)
            figures |= scale_loads.stall(fleet, rng)
            figures |= scale_loads.burst(fleet, rng)
            figures["rss"] = rig.rss_mb(fleet.daemon.pid)
            figures["rss_peak"] = rig.rss_mb(fleet.daemon.pid, "VmHWM")
        starts = [fleet.restart(rng) for _ in range(RESTARTS)]
        figures["startup"] = statistics.median(starts) * 1000
        with BrokerClient(bus=fleet.bus.address, timeout=CALL_TIMEOUT_S) as client:
            figures |= _removals(fleet, client)  # last: with 1 account, none is left
    return figures


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="1,100",
                        help="comma-separated sizes (default 1,100; e.g. 1,100,1000)")
    parser.add_argument("--scopes", type=int, default=10, help="scopes per account (10)")
    parser.add_argument("--clients", type=int, default=8,
                        help="client processes for throughput; sign-ins at once (8)")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(n) for n in args.accounts.split(",") if n.strip()})
    if not args.sizes or args.sizes[0] < 1 or args.scopes < 1 or args.clients < 1:
        parser.error("sizes, scopes and clients must be positive")
    return args


def main(argv: list[str] | None = None) -> str:
    args = _parse(argv or [])
    load_before = rig.load_average()
    by_size: dict[int, dict[str, float]] = {}
    with multiprocessing.get_context("spawn").Pool(args.clients,
                                                   initializer=scale_loads.ready) as pool:
        for size in args.sizes:
            with tempfile.TemporaryDirectory(prefix=f"ab-bench-scale-{size}-") as name:
                by_size[size] = _size(pool, Path(name), size, args)
    print(json.dumps({"load_before": load_before, "load_after": rig.load_average(),
                      "figures": {str(n): {k: round(v, 3) for k, v in f.items()}
                                  for n, f in by_size.items()}}), file=sys.stderr)
    columns = [f"{n:,} × {args.scopes}" for n in args.sizes]
    table = [(spec.label, [f"{by_size[n][spec.key]:.{spec.digits}f} {spec.unit}"
                           for n in args.sizes]) for spec in SPECS]
    grid(f"Daemon at scale, by accounts × scopes ({load_before} before)", columns, table)
    small, large = by_size[args.sizes[0]], by_size[args.sizes[-1]]
    rows: list[Row] = goal_rows(small, large, len(args.sizes) > 1)
    title = (f"Daemon at scale: {args.sizes[-1]:,} accounts against {args.sizes[0]:,} "
             f"({rig.load_average()})")
    return report(title, rows)


if __name__ == "__main__":
    main(sys.argv[1:])
