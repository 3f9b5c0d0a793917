"""Profile the router (the slowest stage) while it drains a backlog, with py-spy, and print where the
time goes by category.

    python -m bench.profile [--changes 80000] [--seconds 20]

Starts ``python -m bench.router --changes N --runs 1`` (which writes the backlog and starts a real
``cdx route`` process), attaches ``py-spy record`` (sampling, 200 Hz, raw collapsed stacks) to the
router process for ``--seconds`` while it routes, and sums the samples of its main thread by the
innermost cdx frame: byte-level scan and routing, key state, Avro codec, routing rules, per-record glue
and produce, engine loop and transactions, or (no cdx frame; ``--engine faust``) faust / mode /
asyncio per-event machinery. The raw stacks are kept in ``bench/results/`` for a flame graph.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import RESULTS

CATEGORIES = (
    ("cdx/codec/", "Avro decode/encode (cdx.codec)"),
    ("cdx/streams/avroscan.py", "byte-level envelope scan (cdx.streams.avroscan)"),
    ("cdx/streams/fastpath.py", "byte-level routing: groups, slicing (cdx.streams.fastpath)"),
    ("cdx/streams/keystate.py", "key state (cdx.streams.keystate)"),
    ("cdx/streams/stateful.py", "routing rules (cdx.streams.routing, cdx.streams.stateful)"),
    ("cdx/streams/routing.py", "routing rules (cdx.streams.routing, cdx.streams.stateful)"),
    ("cdx/routed.py", "routing rules (cdx.streams.routing, cdx.streams.stateful)"),
    ("cdx/streams/batch.py", "per-record glue and produce (cdx.streams.batch, confluent-kafka produce)"),
    ("cdx/kafka/batches.py", "consume (confluent-kafka)"),
    ("cdx/streams/activation.py", "activation and reload checks (cdx.streams.activation)"),
    ("cdx/streams/engine.py", "transactions (send offsets, commit; cdx.streams.engine)"),
    ("cdx/streams/tables.py", "source: consume glue, activation calls (cdx.streams.tables)"),
    ("cdx/stage/", "stage loop (cdx.stage.loop)"),
    ("cdx/streams/output.py", "produce (confluent-kafka)"),
    ("cdx/streams/router.py", "router glue (cdx.streams.router)"),
    ("cdx/streams/app.py", "router glue (cdx.streams.router)"),
    ("prometheus_client", "metrics"),
)


def router_pid(timeout: float = 900.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", "cdx.cli.main route --topology .*cdx-bench-router-"],
                             capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.5)
    raise SystemExit("the router process did not start")


def categorize(raw: Path) -> tuple[Counter[str], int]:
    cats: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not any("run_forever" in f or "cdx/streams/engine.py" in f for f in frames):
            continue  # other threads, or a stack py-spy could not read completely (faust: the event loop)
        count = int(n)
        total += count
        cat = None
        for frame in reversed(frames):
            cat = next((name for marker, name in CATEGORIES if marker in frame), None)
            if cat:
                break
        if cat is None:
            cat = "idle (waiting in select)" if "select" in frames[-1].lower() else \
                "no cdx frame (faust / mode / asyncio per-event machinery with --engine faust)"
        cats[cat] += count
    return cats, total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--changes", type=int, default=80_000)
    ap.add_argument("--seconds", type=float, default=20.0)
    args, _ = ap.parse_known_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / f"router-profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    bench = subprocess.Popen([sys.executable, "-m", "bench.router", "--changes", str(args.changes), "--runs", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = router_pid()
        time.sleep(5)  # group join and partition activation are not the steady state
        spy = Path(sys.executable).with_name("py-spy")
        subprocess.run([str(spy), "record", "-p", str(pid), "-d", str(int(args.seconds)), "-r", "200", "-f", "raw",
                        "-o", str(raw), "--nonblocking"], check=True, capture_output=True)
    finally:
        bench.wait(900)
    cats, total = categorize(raw)
    print(f"router main thread, {total:,} samples over {args.seconds:g}s (py-spy, 200 Hz); raw stacks: {raw}")
    for name, count in cats.most_common():
        print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
