"""Run benchmarks by name (default: all): ``python -m benchmarks [import daemon plugin]``."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "import": "benchmarks.bench_import",
    "daemon": "benchmarks.bench_daemon",
    "plugin": "benchmarks.bench_plugin",
}


def main(argv: list[str]) -> int:
    names = argv or list(SUITES)
    for name in names:
        if name not in SUITES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        importlib.import_module(SUITES[name]).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
