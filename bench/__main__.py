"""``python -m bench [NAME ...]`` (``make bench``): run the benchmarks, each printing its table
beside a baseline measured in the same run and writing JSON to ``bench/results/``.

Names: capture, router, apply, e2e, upload, scale, bootstrap, realtime, peer_debezium (cdx against Debezium
on Kafka Connect; needs Java and Maven) (default: all, in that order). Options after ``--`` go to
every benchmark, e.g. ``python -m bench capture apply -- --runs 1`` (the ``--`` may be left out:
``python -m bench peer_debezium --runs 3``).
"""

from __future__ import annotations

import importlib
import sys

BENCHES = ("capture", "router", "apply", "e2e", "upload", "scale", "bootstrap", "realtime", "peer_debezium")


def main(argv: list[str]) -> int:
    # names first, then options: ``peer_debezium --runs 3`` and ``peer_debezium -- --runs 3`` alike
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, rest = argv[:split], argv[split + 1:] if argv[split:split + 1] == ["--"] else argv[split:]
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
