"""Profile the capture and the sink (``bench.profile`` does the router) with py-spy while they carry the
end-to-end workload, and print where their time goes by category.

    python -m bench.profile_stages [--changes 100000] [--seconds 40]

Starts ``python -m bench.e2e --changes N --runs 1 --channels 1 --channel-dialect postgresql`` (real
``cdx capture``, ``cdx route`` and ``cdx sink`` processes), waits for the first throughput run to start
(the capture's process appears, then its ready phase), and attaches ``py-spy record`` (200 Hz, raw
collapsed stacks, idle samples excluded) to the capture and to the sink process at the same time for
``--seconds``. Each sample is put in the category of its innermost frame that names one of the markers
below (else "other"). The raw stacks are kept in ``bench/results/`` for flame graphs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import RESULTS

CATEGORIES: dict[str, tuple[tuple[str, str], ...]] = {
    "capture": (
        ("cdx/codec/prepare.py", "value preparation before encoding (cdx.codec.prepare)"),
        ("cdx/codec/envelope.py", "envelope building (cdx.codec.envelope)"),
        ("cdx/codec/", "Avro encode (cdx.codec, fastavro)"),
        ("cdx/dialects/", "dialect calls (value decoding, column introspection)"),
        ("cdx/connectors/capture/tracking/", "reading net changes (tracking queries, psycopg)"),
        ("cdx/kafka/", "produce and transactions (cdx.kafka, confluent-kafka)"),
        ("prometheus_client", "metrics"),
        ("cdx/connectors/capture/", "capture glue (cdx.connectors.capture)"),
    ),
    "sink": (
        ("cdx/codec/", "Avro decode (cdx.codec, fastavro)"),
        ("cdx/routed.py", "record conversion (cdx.routed, cdx.connectors.sink.records)"),
        ("cdx/connectors/sink/records.py", "record conversion (cdx.routed, cdx.connectors.sink.records)"),
        ("cdx/connectors/sink/plan.py", "batch planning (cdx.connectors.sink.plan: row tuples, collapse)"),
        ("cdx/dialects/", "database write (cdx.dialects: COPY + upsert, psycopg)"),
        ("cdx/connectors/sink/sessions.py", "download sessions"),
        ("cdx/connectors/sink/state.py", "offsets and watermarks"),
        ("cdx/kafka/", "consume (cdx.kafka, confluent-kafka)"),
        ("prometheus_client", "metrics"),
        ("cdx/connectors/sink/", "sink glue (cdx.connectors.sink)"),
    ),
}


def find_pid(role: str, run_dir: str, timeout: float = 300.0) -> int:
    """The ``cdx <role>`` process of this benchmark's run (its topology lies in ``run_dir``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-n", "-f", f"cdx.cli.main {role} --topology {run_dir}/topology.yaml"],
                             capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.5)
    raise SystemExit(f"the {role} process did not start")


def categorize(raw: Path, role: str) -> tuple[Counter[str], int]:
    cats: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        count = int(n)
        total += count
        cat = "other (interpreter, threads, no cdx frame)"
        for frame in reversed(frames):
            found = next((name for marker, name in CATEGORIES[role] if marker in frame), None)
            if found:
                cat = found
                break
        cats[cat] += count
    return cats, total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_stages")
    ap.add_argument("--changes", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=40.0)
    args, _ = ap.parse_known_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    e2e = subprocess.Popen([sys.executable, "-m", "bench.e2e", "--changes", str(args.changes), "--runs", "1",
                            "--channels", "1", "--channel-dialect", "postgresql", "--seconds", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    raws = {role: RESULTS / f"{role}-profile-{stamp}.txt" for role in ("capture", "sink")}
    try:
        assert e2e.stdout is not None
        run_dir = ""
        for line in e2e.stdout:  # "e2e: ...; logs and databases in <dir>", then "pipeline ready ..."
            if "logs and databases in" in line:
                run_dir = line.rsplit(" ", 1)[1].strip()
            if "pipeline ready" in line:
                break
        pids = {role: find_pid(role, run_dir) for role in raws}
        spy = Path(sys.executable).with_name("py-spy")
        spies = [subprocess.Popen([str(spy), "record", "-p", str(pids[role]), "-d", str(int(args.seconds)), "-r", "200",
                                  "-f", "raw", "-o", str(raw), "--nonblocking"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for role, raw in raws.items()]
        for s in spies:
            s.wait()
    finally:
        e2e.communicate(timeout=1800)
    for role, raw in raws.items():
        cats, total = categorize(raw, role)
        print(f"{role}: {total:,} non-idle samples over {args.seconds:g}s (py-spy, 200 Hz); raw stacks: {raw}")
        for name, count in cats.most_common():
            print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
