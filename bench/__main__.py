"""``python -m bench [NAME ...]`` (``make bench``): run the benchmarks, each printing its table
beside a baseline measured in the same run and writing JSON to ``bench/results/``.

Names: capture, router, apply, e2e, upload, scale, bootstrap, realtime (default: all, in that order).
Options after ``--`` go to every benchmark, e.g. ``python -m bench capture apply -- --runs 1``.
"""

from __future__ import annotations

import importlib
import sys

BENCHES = ("capture", "router", "apply", "e2e", "upload", "scale", "bootstrap", "realtime")


def main(argv: list[str]) -> int:
    names, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    for name in names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        module.main(list(rest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
