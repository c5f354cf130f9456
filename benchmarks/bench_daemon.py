"""The broker daemon (issue 3) on a private dbus-daemon, with the local authority behind it.

* A silent token through the daemon (``BrokerClient.acquire_token_silently`` for an account
  signed in once at the start) against a raw D-Bus call with the same payload to
  ``benchmarks.echo_service`` on the same bus (same request JSON, the daemon's own reply text
  replayed): median latency with 1 client, and calls/s with 8 client processes (median of 5
  rounds a side, a round rerun if its clients did not start together), each with its
  own connection (the same for the baseline). Blocks alternate so drift hits both sides.
* D-Bus activation to the first answered Ping: a fresh private bus with a ``.service`` file for
  the daemon each run; the time from sending Ping to its reply.
* The daemon's idle resident memory (VmRSS after the sign-in and a pause).

Goals: silent ≤ 1.5× the raw call; 8 clients ≥ 0.7× the raw throughput; activation ≤ 0.5 s;
idle RSS ≤ 60 MB. Rows without a goal are there to explain the others.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

from jeepney import DBusAddress, MessageType, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

from authbroker import broker1
from authbroker.client import Broker1Messages, BrokerClient
from benchmarks import rig
from benchmarks.harness import Row, measure, median_ms, report

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # Azure CLI's public client id
SCOPE = "https://storage.azure.com/.default"
ECHO_NAME = "io.authbroker.BenchEcho"
BLOCKS, CALLS_PER_BLOCK = 5, 100  # 1 client: 500 calls a side, in alternating blocks
CLIENTS, CALLS_PER_CLIENT, ROUNDS = 8, 150, 5  # throughput: median of ROUNDS rounds a side
ACTIVATIONS = 7
IDLE_PAUSE_S = 2.0


def _raw_call(conn: DBusConnection, bus_name: str, request_json: str) -> str:
    """One Broker1-shaped call with plain jeepney: what the daemon's answer is compared to."""
    address = DBusAddress(broker1.OBJECT_PATH, bus_name=bus_name, interface=broker1.INTERFACE)
    msg = new_method_call(address, broker1.Method.ACQUIRE_TOKEN_SILENTLY.value, "sss",
                          (broker1.PROTOCOL_VERSION, str(uuid.uuid4()), request_json))
    reply = conn.send_and_get_reply(msg, timeout=30)
    if reply.header.message_type is not MessageType.method_return:
        raise RuntimeError(f"{bus_name} answered with an error: {reply.body}")
    return reply.body[0]


def _client_process(bus_address: str, auth: broker1.AuthParameters | None, request_json: str,
                    start_at: float) -> tuple[float, float]:
    """One of the concurrent clients: ``auth`` → BrokerClient to the daemon, else raw echo."""
    if auth is not None:
        with BrokerClient(bus=bus_address, timeout=60) as client:
            call = lambda: client.acquire_token_silently(auth)  # noqa: E731
            return _timed_span(call, start_at)
    with closing(open_dbus_connection(bus_address)) as conn:
        return _timed_span(lambda: _raw_call(conn, ECHO_NAME, request_json), start_at)


def _timed_span(call, start_at: float) -> tuple[float, float]:  # noqa: ANN001
    call()  # connected and warm before the common start
    time.sleep(max(0.0, start_at - time.time()))
    began = time.time()
    for _ in range(CALLS_PER_CLIENT):
        call()
    return began, time.time()


def _throughput(pool, bus: rig.Bus, auth: broker1.AuthParameters | None,  # noqa: ANN001
                request_json: str) -> float:
    """Calls/s of CLIENTS processes calling at once; a round whose clients did not all start
    within 0.2 s of each other (a process was late under load) is run again."""
    for _ in range(3):
        start_at = time.time() + 1.5  # every client has connected and made its warm-up call
        spans = pool.starmap(_client_process,
                             [(bus.address, auth, request_json, start_at)] * CLIENTS)
        began, ended = [b for b, _ in spans], [e for _, e in spans]
        if max(began) - min(began) <= 0.2:
            return CLIENTS * CALLS_PER_CLIENT / (max(ended) - min(began))
    raise RuntimeError("the clients never started together; the machine is too busy")


def _ready() -> None:
    """Pool initializer: each process imports this module (and the client) before any round."""


def _activations(tmp: Path) -> tuple[list[float], list[float]]:
    """(Ping answered, first getAccounts answered) after activation, seconds, per fresh bus."""
    pings, first_calls = [], []
    env = rig.daemon_env(tmp)
    for _ in range(ACTIVATIONS):
        with rig.private_bus(env) as bus:
            bus.activatable(broker1.BUS_NAME, rig.daemon_argv(tmp))
            with closing(bus.connect()) as conn, BrokerClient(bus=bus.address, timeout=30) as c:
                ping = new_method_call(DBusAddress(broker1.OBJECT_PATH, bus_name=broker1.BUS_NAME,
                                                   interface=broker1.PEER_INTERFACE), "Ping")
                started = time.perf_counter()
                reply = conn.send_and_get_reply(ping, timeout=10)
                pings.append(time.perf_counter() - started)
                if reply.header.message_type is not MessageType.method_return:
                    raise RuntimeError(f"activation failed: {reply.body}")
                c.get_accounts(CLIENT_ID)
                first_calls.append(time.perf_counter() - started)
            pid = bus.owner_pid(broker1.BUS_NAME)
            os.kill(pid, signal.SIGTERM)
            bus.wait(broker1.BUS_NAME, owned=False)
            _wait_exited(pid)
    return pings, first_calls


def _wait_exited(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _sign_in(client: BrokerClient, tmp: Path) -> broker1.AuthParameters:
    """Sign in once (the scripted user agent plays the person); the silent call's parameters."""
    base = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(SCOPE,))
    signed_in = client.acquire_token_interactively(base, on_device_code=None)
    if signed_in.account is None or rig.sign_ins(tmp / "ua-daemon.log") != 1:
        raise RuntimeError("the sign-in through the daemon did not happen")
    silent = dataclasses.replace(base, account=signed_in.account)
    client.acquire_token_silently(silent)
    return silent


@dataclasses.dataclass
class Served:
    """The figures measured against a running daemon (seconds, calls/s, MB, bytes)."""

    raw: list[float]
    ours: list[float]
    ours_raw: list[float]
    raw_tput: list[float]
    our_tput: list[float]
    idle_rss: float
    busy_rss: float
    reply_bytes: int
    request_bytes: int


def _served(tmp: Path) -> Served:
    """Everything measured against a running daemon and the echo service."""
    with rig.authority(tmp) as auth, rig.private_bus() as bus, \
            rig.broker(bus, auth, tmp) as daemon, \
            BrokerClient(bus=bus.address, timeout=120) as client, \
            closing(bus.connect()) as conn:
        silent = _sign_in(client, tmp)
        time.sleep(IDLE_PAUSE_S)
        idle_rss = rig.rss_mb(daemon.pid)
        request_json = broker1.encode(Broker1Messages.silent_request(silent).to_wire())
        reply = _raw_call(conn, broker1.BUS_NAME, request_json)
        token = broker1.parse_response(broker1.Method.ACQUIRE_TOKEN_SILENTLY, reply)
        assert isinstance(token, broker1.TokenResult) and token.access_token
        (tmp / "reply.json").write_text(reply)
        echo_argv = [sys.executable, "-m", "benchmarks.echo_service", ECHO_NAME,
                     str(tmp / "reply.json")]
        echo_env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=bus.address,
                        PYTHONPATH=str(rig.REPO))
        with rig.service(echo_argv, echo_env, tmp / "echo.log"):
            bus.wait(ECHO_NAME)
            raw: list[float] = []
            ours: list[float] = []
            ours_raw: list[float] = []
            for _ in range(BLOCKS):  # alternating blocks: drift hits every side alike
                raw += measure(lambda: _raw_call(conn, ECHO_NAME, request_json),
                               repeat=CALLS_PER_BLOCK)
                ours += measure(lambda: client.acquire_token_silently(silent),
                                repeat=CALLS_PER_BLOCK)
                ours_raw += measure(lambda: _raw_call(conn, broker1.BUS_NAME, request_json),
                                    repeat=CALLS_PER_BLOCK)
            raw_tput: list[float] = []
            our_tput: list[float] = []
            with multiprocessing.get_context("spawn").Pool(CLIENTS, initializer=_ready) as pool:
                for _ in range(ROUNDS):
                    raw_tput.append(_throughput(pool, bus, None, request_json))
                    our_tput.append(_throughput(pool, bus, silent, request_json))
        return Served(raw, ours, ours_raw, raw_tput, our_tput, idle_rss, rig.rss_mb(daemon.pid),
                      len(reply), len(request_json))


def main() -> str:
    load_before = rig.load_average()
    with tempfile.TemporaryDirectory(prefix="ab-bench-daemon-") as name:
        tmp = Path(name)
        m = _served(tmp)
        pings, first_calls = _activations(tmp)
    raw, ours, ours_raw = m.raw, m.ours, m.ours_raw
    raw_tput, our_tput, idle_rss, busy_rss = m.raw_tput, m.our_tput, m.idle_rss, m.busy_rss
    rows = [
        Row("silent token, 1 client, BrokerClient (median)", median_ms(ours), "ms",
            baseline=median_ms(raw), goal="≤ 1.5× raw D-Bus call"),
        Row("↳ same call with the baseline's raw jeepney client", median_ms(ours_raw), "ms",
            baseline=median_ms(raw)),
        Row(f"silent token, {CLIENTS} client processes (median of {ROUNDS})",
            statistics.median(our_tput), "calls/s", baseline=statistics.median(raw_tput),
            goal="≥ 0.7× raw throughput"),
        Row(f"D-Bus activation → first Ping answered (median of {ACTIVATIONS})",
            statistics.median(pings) * 1000, "ms", goal="≤ 500 ms"),
        Row("↳ activation → first getAccounts answered (core loaded)",
            statistics.median(first_calls) * 1000, "ms"),
        Row("daemon idle RSS (1 account signed in, file-key store)", idle_rss, "MB",
            goal="≤ 60 MB"),
        Row("↳ daemon RSS after the load runs", busy_rss, "MB"),
    ]
    rows[0].ok = rows[0].ratio is not None and rows[0].ratio <= 1.5
    rows[2].ok = rows[2].ratio is not None and rows[2].ratio >= 0.7
    rows[3].ok = rows[3].value <= 500
    rows[5].ok = idle_rss <= 60
    print(json.dumps({"load_before": load_before, "load_after": rig.load_average(),
                      "raw_calls_per_s": [round(t) for t in raw_tput],
                      "daemon_calls_per_s": [round(t) for t in our_tput],
                      "activation_ms": [round(s * 1000) for s in pings],
                      "reply_bytes": m.reply_bytes, "request_bytes": m.request_bytes}),
          file=sys.stderr)
    return report(f"Broker daemon ({rig.load_average()})", rows)


if __name__ == "__main__":
    main()
