"""Proof-of-Possession (issue 9) through the daemon on a private dbus-daemon, the local authority
behind it: a PoP silent call (``popParams``: the memoised PoP access token, a fresh SHR signed
per call) against a bearer silent call for the same account and scope, in the same run
(alternating blocks, so drift hits both sides). Also, to explain the ratio:
``generateSignedHttpRequest`` (an SHR without ``at``), one RS256 signature in this process
(``authbroker.shr.sign``), and the plugin's ``get_token_info`` with ``pop`` options.

Goal: PoP silent ≤ 2× bearer silent (the RSA signature is the only extra work).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from authbroker import broker1, shr
from authbroker.client import BrokerClient
from benchmarks import rig
from benchmarks.harness import Row, measure, median_ms, report

CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
BLOCKS, CALLS_PER_BLOCK = 5, 60


def _signed_in(client: BrokerClient, scope: str, tmp: Path) -> broker1.AuthParameters:
    base = broker1.AuthParameters(client_id=CLIENT_ID, requested_scopes=(scope,))
    result = client.acquire_token_interactively(base, on_device_code=None)
    if result.account is None or rig.sign_ins(tmp / "ua-daemon.log") != 1:
        raise RuntimeError("the sign-in through the daemon did not happen")
    return dataclasses.replace(base, account=result.account)


def _plugin_pop(auth: rig.Authority) -> list[float]:
    """The plugin's get_token_info with ``pop`` (every call a broker round and a fresh SHR)."""
    from azure.identity.broker import InteractiveBrowserBrokerCredential

    options = {"pop": {"resource_request_method": "GET",
                       "resource_request_url": auth.pop_resource, "nonce": "bench"}}
    with InteractiveBrowserBrokerCredential(
            authority=auth.authority, tenant_id=auth.tenant_id, disable_instance_discovery=True,
            use_default_broker_account=True, disable_interactive_fallback=True) as credential:
        call = lambda: credential.get_token_info(  # noqa: E731
            auth.pop_resource_scope, options=options)  # type: ignore[arg-type]
        return measure(call, repeat=BLOCKS * CALLS_PER_BLOCK // 2)


def main() -> str:
    load_before = rig.load_average()
    with tempfile.TemporaryDirectory(prefix="ab-bench-pop-") as name:
        tmp = Path(name)
        with rig.authority(tmp) as auth, rig.environ(**rig.trust(auth)), \
                rig.private_bus() as bus, rig.broker(bus, auth, tmp), \
                rig.environ(DBUS_SESSION_BUS_ADDRESS=bus.address), \
                BrokerClient(bus=bus.address, timeout=120) as client:
            bearer = _signed_in(client, auth.pop_resource_scope, tmp)
            url = broker1.PopParams(http_method="GET", uri_host=auth.pop_resource.split("/")[2],
                                    uri_path="/resource/pop", nonce="bench",
                                    home_account_id=bearer.account.home_account_id)  # type: ignore[union-attr]
            pop = dataclasses.replace(bearer, pop_params=url)
            first = client.acquire_token_silently(pop)  # the PoP access token, memoised after
            if first.access_token_type != broker1.AccessTokenType.POP:
                raise RuntimeError("the daemon did not answer the PoP request with an SHR")
            bearer_s: list[float] = []
            pop_s: list[float] = []
            for _ in range(BLOCKS):
                bearer_s += measure(lambda: client.acquire_token_silently(bearer),
                                    repeat=CALLS_PER_BLOCK)
                pop_s += measure(lambda: client.acquire_token_silently(pop),
                                 repeat=CALLS_PER_BLOCK)
            generate = measure(lambda: client.generate_signed_http_request(CLIENT_ID, url),
                               repeat=CALLS_PER_BLOCK)
            plugin = _plugin_pop(auth)
    key = shr.new_key()
    signing = measure(lambda: shr.sign(key, method="GET", host="h", path="/p", at="a.b.c",
                                       nonce="n"), repeat=200)
    rows = [
        Row("PoP silent token (fresh SHR, cached access token), BrokerClient (median)",
            median_ms(pop_s), "ms", baseline=median_ms(bearer_s), goal="≤ 2× bearer silent"),
        Row("↳ generateSignedHttpRequest (SHR without at)", median_ms(generate), "ms"),
        Row("↳ one RS256 SHR signature in-process (authbroker.shr.sign)", median_ms(signing),
            "ms"),
        Row("↳ plugin get_token_info(options={'pop': …}) through the daemon", median_ms(plugin),
            "ms"),
    ]
    rows[0].ok = rows[0].ratio is not None and rows[0].ratio <= 2.0
    print(json.dumps({"load_before": load_before, "load_after": rig.load_average(),
                      "calls_a_side": len(pop_s)}), file=sys.stderr)
    return report(f"Proof-of-Possession through the daemon ({rig.load_average()})", rows)


if __name__ == "__main__":
    main()
