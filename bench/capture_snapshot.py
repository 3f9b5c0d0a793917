"""A snapshot of a large HQ table: chunked, resumable, killed half-way.

    python -m bench.capture_snapshot [--rows 5000000] [--runs 1]

(5M rows: about 40 minutes on a loaded 2-core machine, plus building the table; no time limit inside.)

Creates a SQLite HQ table of ``--rows`` rows (5 columns) once, then per run: a fresh topic prefix,
``cdx capture`` (a real process) snapshotting the table; when the committed position shows half
of the rows published, the process is SIGKILLed and started again; the run ends when the position
shows the snapshot complete. Reports the snapshot's rows/s (kill and restart included) beside the
same-run baseline ``SELECT *`` of the table (same driver), the rows already published when killed
and the rows the restart published, and checks that the topic holds every row exactly once
(read back with ``read_committed``, counted): the restart resumed, it did not start over.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.capture import TOPOLOGY, columns, row
from bench.common import Result, save, show, timed
from cdx.connectors.capture.positions import Position, load_positions
from cdx.connectors.capture.tracking import open_tracker
from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import positions_topic
from cdx.topology import parse_topology


def make_table(dsn: str, rows: int) -> None:
    d = get_dialect("sqlite")
    cols = columns(5)
    conn = connect("sqlite", dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        d.create_table(conn, "dbo", "BENCH", cols, ["ID"])
    step = 100_000
    for start in range(0, rows, step):
        with d.transaction(conn):
            conn.executemany(f"INSERT INTO {d.qualified('dbo', 'BENCH')} VALUES (?, ?, ?, ?, ?)",
                             [tuple(d.encode(v) for v in row(i, cols)) for i in range(start, min(rows, start + step))])
    conn.close()
    tracker = open_tracker("sqlite", dsn)
    tracker.enable(["dbo.BENCH"])  # after the rows: the table needs a snapshot, not 5M tracked changes
    tracker.conn.close()


def position(cfg: dict, prefix: str) -> Position | None:
    return load_positions(cfg, positions_topic(prefix), "hq").get("dbo.BENCH")


def spawn(path: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "capture", "--topology", str(path)], stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def run_once(bootstrap: str, dsn: str, rows: int, tmp: Path) -> dict[str, float]:
    prefix = f"snap{uuid.uuid4().hex[:8]}"
    path = tmp / f"{prefix}.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=bootstrap, prefix=prefix, dialect="sqlite", dsn=dsn,
                                    fields=", ".join(c.name for c in columns(5)), tmp=tmp))
    topo = parse_topology(path.read_text())
    cfg = client_config(topo.kafka.bootstrap_servers)
    log = tmp / f"{prefix}.log"
    start = time.perf_counter()
    proc = spawn(path, log)
    killed_at = 0
    while True:
        time.sleep(1)
        pos = position(cfg, prefix)
        if pos is not None and pos.snapshot is not None and pos.snapshot.rows >= rows // 2:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = pos.snapshot.rows
            break
        assert proc.poll() is None, f"cdx capture exited early; see {log}"
    proc = spawn(path, log)
    try:
        while True:
            time.sleep(1)
            pos = position(cfg, prefix)
            if pos is not None and pos.snapshot is None:
                break
            assert proc.poll() is None, f"cdx capture exited early; see {log}"
        seconds = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    topic = f"{prefix}.hq.dbo.BENCH"
    records = sum(1 for _ in read_to_end(cfg, topic))
    assert records == rows, f"{records} records on {topic}; expected {rows}, each once"
    return {"seconds": seconds, "killed_at": killed_at, "rows_per_s": rows / seconds}


def select_all(dsn: str) -> None:
    conn = connect("sqlite", dsn)
    conn.execute("SELECT * FROM dbo_BENCH").fetchall()
    conn.close()


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher

    parser = argparse.ArgumentParser(prog="python -m bench.capture_snapshot")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=1)
    args, _others = parser.parse_known_args(argv)
    bootstrap = launcher.up(1)
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-snapshot-"))
    dsn = f"sqlite:///{tmp}/hq.db"
    made = timed(lambda: make_table(dsn, args.rows))
    print(f"made {args.rows:,} rows in {made:.0f}s", flush=True)
    runs, baselines = [], []
    for _ in range(args.runs):
        runs.append(run_once(bootstrap, dsn, args.rows, tmp))
        baselines.append(args.rows / timed(lambda: select_all(dsn)))
        print(runs[-1], f"baseline {baselines[-1]:,.0f} rows/s", flush=True)
    by_speed = sorted(runs, key=lambda r: r["rows_per_s"])
    mid = by_speed[len(by_speed) // 2]
    result = Result("capture_snapshot", f"sqlite, {args.rows:,} rows, killed once half-way", "rows/s",
                    mid["rows_per_s"], sorted(baselines)[len(baselines) // 2], "plain SELECT", args.runs,
                    {"seconds": mid["seconds"], "killed_at_rows": mid["killed_at"], "all_runs": runs})
    show([result], "capture: chunked snapshot of a large table (kill and resume included)")
    save([result], "capture_snapshot")
    return [result]


if __name__ == "__main__":
    main()
