"""The plugin (issue 4): ``get_token`` with a cached token.

Our ``InteractiveBrowserBrokerCredential`` (the default backend: our daemon on a private bus)
against azure-identity's ``InteractiveBrowserCredential``, in the same run, on the same local
authority. Each is signed in once first — ours through the daemon, azure-identity's through its
own loopback browser flow, both by the scripted user agent, whose logs prove who signed in —
then both answer ``get_token`` from their caches in alternating blocks.

Goal: ≤ 1.2× azure-identity.
"""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

from authbroker import config
from authbroker.devkit import useragent
from authbroker.devkit.privatebus import SESSION_BUS_VAR
from authbroker.devkit.processes import environ
from azure.identity import InteractiveBrowserCredential
from azure.identity.broker import InteractiveBrowserBrokerCredential
from benchmarks import rig
from benchmarks.harness import Row, measure, median_ms, report

SCOPE = "https://storage.azure.com/.default"
BLOCKS, CALLS_PER_BLOCK = 5, 2000


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="ab-bench-plugin-") as name:
        tmp = Path(name)
        own_log = tmp / "ua-client.log"
        with rig.authority(tmp) as auth, rig.private_bus() as bus, \
                rig.broker(bus, auth, tmp) as daemon, \
                environ({**auth.trust_env(), SESSION_BUS_VAR: bus.address,
                         **useragent.browser_env(own_log), config.BACKEND: "auto"}):
            webbrowser._tryorder = None  # type: ignore[attr-defined]  # read $BROWSER again
            kwargs = {"authority": auth.authority, "tenant_id": auth.tenant_id,
                      "disable_instance_discovery": True, "timeout": 120}
            ours = InteractiveBrowserBrokerCredential(**kwargs)
            base = InteractiveBrowserCredential(**kwargs)
            try:
                ours.get_token(SCOPE)
                if daemon.sign_ins() != 1 or useragent.sign_ins(own_log) != 0:
                    raise RuntimeError("our credential did not sign in through the daemon")
                base.get_token(SCOPE)
                if useragent.sign_ins(own_log) != 1:
                    raise RuntimeError("azure-identity's credential did not sign in")
                our_samples: list[float] = []
                base_samples: list[float] = []
                for _ in range(BLOCKS):  # alternating blocks: drift hits both sides alike
                    our_samples += measure(lambda: ours.get_token(SCOPE), repeat=CALLS_PER_BLOCK)
                    base_samples += measure(lambda: base.get_token(SCOPE),
                                            repeat=CALLS_PER_BLOCK)
                if daemon.sign_ins() + useragent.sign_ins(own_log) != 2:
                    raise RuntimeError("a cached call signed in again")
            finally:
                ours.close()
                base.close()
    row = Row("get_token, cached token (dbus backend, our daemon)", median_ms(our_samples) * 1000,
              "µs", baseline=median_ms(base_samples) * 1000,
              goal="≤ 1.2× InteractiveBrowserCredential")
    row.ok = row.ratio is not None and row.ratio <= 1.2
    title = f"Plugin, median of {BLOCKS * CALLS_PER_BLOCK} cached calls ({rig.load_average()})"
    return report(title, [row])


if __name__ == "__main__":
    main()
