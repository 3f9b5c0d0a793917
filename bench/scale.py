"""Scale: throughput, memory and threads of ONE ``cdx sink`` process hosting N SQLite channel databases,
beside a plain ``sqlite3`` insert of the same rows into N fresh databases.

    python -m bench.scale [--channels 10,100,500] [--rows 200] [--runs 3] [--timeout 900]

For each N in ``--channels``, ``--rows`` routed records (6-column PARENT upserts, distinct keys) are
produced once to a fresh group topic ``<prefix>.group.g1`` with the test ``FakeRouter``; every channel
of the group receives every record. Each run then creates N *new* SQLite channel databases (new files,
new channel ids, so each sink starts at the beginning of the topic), writes a topology listing them
and starts one real ``cdx sink --topology <path>`` subprocess (output in ``<tmp>/n<N>-r<run>/sink.log``,
kept when a run fails).

Timed: from the subprocess start (Python start-up, set-up, N channels opening their databases and
creating their tables included) until every channel database's stored offsets reach the topic's end
offsets (polled every 0.5 s, or 1 s above 100 channels; a poll stops at the first channel still
behind, so polling costs next to nothing). Figures, each the median over ``--runs``:

- aggregate rows/s = N x rows / seconds, and the seconds;
- seconds until all N channels were started (one ``assigned`` line each in the sink log):
  the start-up share of the time;
- peak RSS (``VmHWM``) and RSS after catching up (``VmRSS``, once idle was measured) from /proc, in MiB;
- threads (``Threads`` in /proc/<pid>/status) and open file descriptors after catching up;
- in the JSON also: the sink's CPU seconds (user + system) to catch up, its CPU use while idle
  (``IDLE_WINDOW_S`` seconds, starting ``IDLE_SETTLE_S`` after the last channel caught up: the channels
  checked last may still be committing their final batch then), and how long it takes to exit after
  SIGTERM (it must exit 0).

The default ``--rows 200`` keeps the default run at about two minutes on two cores (start-up is most
of it); at 500 channels the sink needs roughly 0.3 ms of CPU per row and channel, so
``--rows 2000`` takes ~5 minutes per run there. Baseline (same run, this process): a plain
``sqlite3`` ``executemany`` INSERT of the same rows into N fresh databases (default journal mode,
one transaction per database, table created first), aggregate rows/s. A size that fails (the
process dies, or does not catch up within ``--timeout``) is reported with the tail of the sink log
and the run goes on with the other sizes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import Result, console, median_of, save, show
from tests.sink.helpers import Db, FakeRouter, sqlite_db, stored_offsets, write_topology

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
IDLE_SETTLE_S = 5.0
"""Seconds after catching up before the idle CPU is measured."""
IDLE_WINDOW_S = 10.0
"""Seconds the idle CPU is measured over."""


def rows_of(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"DATAAREAID": "usrt", "ID": i, "NAME": f"item {i}", "PRICE": Decimal(i % 1000) / 4, "VER": 1, "TS": NOW}


def produce(router: FakeRouter, rows: int) -> dict[int, int]:
    """``rows`` upserts to the group topic; returns its end offsets."""
    for row in rows_of(rows):
        router.change("PARENT", "c", row)
        if len(router.sent) >= 10_000:
            router.sent.clear()  # kept by FakeRouter for re-sends; not needed here
    router.flush()
    router.sent.clear()
    return router.ends()


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def mib(status: dict[str, str], key: str) -> float:
    return int(status[key].split()[0]) / 1024


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def caught_up(db: Db, topic: str, ends: dict[int, int]) -> bool:
    got = stored_offsets(db, topic)
    return all(got.get(p, 0) >= e for p, e in ends.items() if e)


def tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class SinkFailed(RuntimeError):
    pass


def run_sink(n: int, run: int, rows: int, ends: dict[int, int], topic: str, prefix: str, bootstrap: str, tmp: Path,
             timeout: float) -> dict[str, float | None]:
    """One run: N new SQLite channels, one ``cdx sink`` process, until all caught up."""
    run_dir = tmp / f"n{n}-r{run}"
    run_dir.mkdir()
    dbs = [sqlite_db(run_dir, f"r{run}c{i:03d}") for i in range(n)]
    path, _ = write_topology(run_dir, bootstrap, dbs, prefix=prefix)
    log = run_dir / "sink.log"
    interval = 0.5 if n <= 100 else 1.0
    assigned_at: float | None = None
    with log.open("ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "--topology", str(path)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            pending = list(dbs)
            while pending:
                time.sleep(interval)
                now = time.perf_counter() - start
                if proc.poll() is not None:
                    raise SinkFailed(f"the sink exited with code {proc.returncode} after {now:.0f}s while"
                                     f" {len(pending)} of {n} channels were behind; log {log}:\n{tail(log)}")
                if now > timeout:
                    raise SinkFailed(f"{len(pending)} of {n} channels not caught up after {timeout:.0f}s;"
                                     f" log {log}:\n{tail(log)}")
                if assigned_at is None and log.read_text(errors="replace").count(": assigned ") >= n:
                    assigned_at = now
                while pending and caught_up(pending[0], topic, ends):
                    pending.pop(0)  # channels progress alike: stop at the first one behind (cheap polls)
            elapsed = time.perf_counter() - start
            cpu = cpu_seconds(proc.pid)
            time.sleep(IDLE_SETTLE_S)  # the last batches' sessions, offset mirrors and idle marks finish
            before_idle = cpu_seconds(proc.pid)
            time.sleep(IDLE_WINDOW_S)
            idle_cpu = (cpu_seconds(proc.pid) - before_idle) / IDLE_WINDOW_S * 100
            status, fds = proc_status(proc.pid), open_fds(proc.pid)
        finally:
            stopping = time.perf_counter()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(180)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            shutdown = time.perf_counter() - stopping
    if proc.returncode != 0:
        raise SinkFailed(f"the sink exited with code {proc.returncode} {shutdown:.0f}s after SIGTERM; log {log}:\n"
                         f"{tail(log)}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"seconds": elapsed, "rows_per_s": n * rows / elapsed, "all_assigned_s": assigned_at,
            "peak_rss_mib": mib(status, "VmHWM"), "rss_mib": mib(status, "VmRSS"), "threads": int(status["Threads"]),
            "fds": fds, "cpu_s": cpu, "cpu_ms_per_row": 1000 * cpu / (n * rows), "idle_cpu_pct": idle_cpu,
            "shutdown_s": shutdown}


def baseline(n: int, rows: int, tmp: Path) -> float:
    """Plain sqlite3: N fresh databases, CREATE TABLE + executemany INSERT in one transaction each."""
    base_dir = tmp / f"base-{n}-{uuid.uuid4().hex[:6]}"
    base_dir.mkdir()
    data = [("usrt", r["ID"], r["NAME"], str(r["PRICE"]), r["VER"], r["TS"].isoformat()) for r in rows_of(rows)]
    start = time.perf_counter()
    for i in range(n):
        conn = sqlite3.connect(base_dir / f"b{i:03d}.db")
        try:
            with conn:
                conn.execute('CREATE TABLE ax_PARENT ("DATAAREAID" TEXT, "ID" INTEGER, "NAME" TEXT, "PRICE" TEXT,'
                             ' "VER" INTEGER, "TS" TEXT, PRIMARY KEY ("DATAAREAID", "ID"))')
                conn.executemany("INSERT INTO ax_PARENT VALUES (?, ?, ?, ?, ?, ?)", data)
        finally:
            conn.close()
    elapsed = time.perf_counter() - start
    shutil.rmtree(base_dir, ignore_errors=True)
    return n * rows / elapsed


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher

    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--channels", default="10,100,500", help="comma-separated channel counts")
    parser.add_argument("--rows", type=int, default=200, help="routed rows in the group topic (each channel gets all)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a run may take to catch up")
    args, _ = parser.parse_known_args(argv)
    bootstrap = launcher.up(1)
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-scale-"))
    results: list[Result] = []
    failures: list[str] = []
    try:
        for n in (int(x) for x in args.channels.split(",")):
            prefix = f"scl{uuid.uuid4().hex[:8]}"
            _, topo = write_topology(tmp, bootstrap, [sqlite_db(tmp, "producer")], prefix=prefix)
            router = FakeRouter(topo)
            ends = produce(router, args.rows)
            assert sum(ends.values()) == args.rows, ends
            base, _ = median_of(args.runs, lambda n=n: baseline(n, args.rows, tmp))
            runs: list[dict[str, float | None]] = []
            try:
                for r in range(args.runs):
                    runs.append(run_sink(n, r, args.rows, ends, router.topic, prefix, bootstrap, tmp, args.timeout))
                    console.print(f"  {n} channels, run {r + 1}: " + ", ".join(
                        f"{k} {v:,.2f}" for k, v in runs[-1].items() if v is not None))
            except SinkFailed as exc:
                failures.append(f"{n} channels: {exc}")
                console.print(f"[red]{n} channels FAILED[/] (run {len(runs) + 1}): {exc}")
            if not runs:
                continue
            med = {k: statistics.median(v) if (v := [x[k] for x in runs if x[k] is not None]) else None
                   for k in runs[0]}
            extra = {"channels": n, "rows": args.rows, "runs_ok": len(runs), "median": med, "all_runs": runs}
            case = f"{n} SQLite channels x {args.rows:,} rows (from process start)"
            results.append(Result("scale", case, "rows/s", med["rows_per_s"] or 0, base, "sqlite3 executemany, N dbs",
                                  len(runs), extra))
            for key, what, unit, scale in (("seconds", "time to catch up", "ms", 1000),
                                           ("all_assigned_s", "time until all consumers assigned", "ms", 1000),
                                           ("peak_rss_mib", "peak RSS (VmHWM)", "MiB", 1),
                                           ("rss_mib", "RSS after catching up", "MiB", 1),
                                           ("threads", "threads", "threads", 1),
                                           ("fds", "open file descriptors", "fds", 1)):
                if med[key] is not None:
                    results.append(Result("scale", f"{n} channels: {what}", unit, scale * (med[key] or 0),
                                          runs=len(runs), extra={"channels": n, "rows": args.rows}))
    finally:
        if failures:
            console.print(f"kept {tmp} (logs of the failed runs)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    show(results, "scale: one sink process, N SQLite channel databases (aggregate rows/s, memory, threads)")
    for f in failures:
        console.print(f"[red]failed:[/] {f}")
    save(results, "scale")
    return results


if __name__ == "__main__":
    main()
