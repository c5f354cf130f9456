"""``import azure.identity.broker`` against ``import azure.identity``, each in fresh processes.

Goal (issue 4): at most 1.1× — backends are imported lazily.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from benchmarks.harness import Row, report

RUNS = 15


def _import_seconds(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - start


def main() -> str:
    base, ours = [], []
    for _ in range(RUNS):  # interleaved so drift hits both equally
        base.append(_import_seconds("azure.identity"))
        ours.append(_import_seconds("azure.identity.broker"))
    b, o = statistics.median(base) * 1000, statistics.median(ours) * 1000
    row = Row("import azure.identity.broker (fresh process)", o, "ms", baseline=b,
              goal="≤ 1.1× import azure.identity")
    row.ok = row.ratio is not None and row.ratio <= 1.1
    return report(f"Import time, median of {RUNS} fresh processes", [row])


if __name__ == "__main__":
    main()
