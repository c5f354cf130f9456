"""Run benchmarks by name (default: all): ``python -m benchmarks [import daemon plugin scale pop]``;
options after one suite's name are that suite's (``python -m benchmarks scale --accounts 1,1000``).
"""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "import": "benchmarks.bench_import",
    "daemon": "benchmarks.bench_daemon",
    "plugin": "benchmarks.bench_plugin",
    "scale": "benchmarks.bench_scale",  # issue 11; takes --accounts/--scopes/--clients
    "pop": "benchmarks.bench_pop",  # issue 9: PoP silent against bearer silent
    "prt": "benchmarks.bench_prt",  # issue 10: PRT-served silent against a refresh
}


def main(argv: list[str]) -> int:
    first_option = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first_option] or list(SUITES), argv[first_option:]
    if options and len(names) != 1:
        print("options go to one suite: python -m benchmarks SUITE [OPTIONS]", file=sys.stderr)
        return 2
    for name in names:
        if name not in SUITES:
            print(f"unknown benchmark {name!r}; choose from {', '.join(SUITES)}", file=sys.stderr)
            return 2
        suite = importlib.import_module(SUITES[name])
        if options:
            suite.main(options)
        else:
            suite.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
