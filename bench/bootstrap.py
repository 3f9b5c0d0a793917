"""Bootstrap: time for a NEW channel database to receive every row of its group topic with
``cdx channel bootstrap``, beside a raw bulk load of the same rows into a fresh database.

    python -m bench.bootstrap [--rows 100000] [--dialects postgresql,sqlite] [--runs 3] [--timeout 3600]
                              [--prefix P] [--profile DIR]

(the "1M rows" figure: ``--rows 1000000``; producing them takes 1-5 minutes, once per invocation, or once
for all with ``--prefix``: a later invocation with the same prefix reads that topic again while the broker
runs. ``--profile DIR`` runs each bootstrap under ``py-spy record --threads --idle``, raw stacks in DIR.)

``--rows`` routed records (6-column PARENT upserts, distinct keys, so compaction removes nothing)
are produced once, with the test ``FakeRouter``, to the group topic ``<prefix>.group.g1`` of a fresh
prefix; every run reads that same topic. Each run creates a new channel database (new id, new
database: PostgreSQL on the private server, or a new SQLite file), writes a topology with the same
prefix listing only that channel, and runs the command a user would run for a new channel:

    python -m cdx.cli.main channel bootstrap --topology <path> --channel <id>

(it creates the channel tables, runs the channel's sink from the beginning of the topic until it
reaches the end offsets seen at its start, then exits). Timed: from the subprocess start to its exit
(Python start-up, ``channel init``, consumer group join and exit included); it must exit 0, and the
channel's stored offsets must reach the topic ends and its table hold ``--rows`` rows (checked after
the clock stops). Reported per dialect, medians over ``--runs``: rows/s, seconds, the bootstrap process's
CPU seconds (user + system, ``wait4`` rusage: on a shared machine the steadier figure) and peak RSS
(``VmHWM``, sampled); in the JSON also its transactions (``batches``: its download sessions). The fixed
cost is shown too: the same command run again on the first run's channel, which is already caught up.

Baseline, same run: PostgreSQL, ``COPY`` of the same rows into a temp table + one ``INSERT ... ON
CONFLICT`` upsert into a fresh table of a fresh database, in one transaction (as ``bench.apply``);
SQLite, a plain ``executemany`` INSERT into a fresh file in one transaction. Only the load is timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.apply import copy_upsert
from bench.common import Result, console, save, show
from cdx.dialects import connect, get_dialect
from tests.sink.helpers import Db, FakeRouter, pg_db, sqlite_db, stored_offsets, write_topology
from tests.sink_ops.helpers import sessions_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parent.parent


def data(rows: int) -> Iterator[tuple[Any, ...]]:
    """The rows every run loads, as (DATAAREAID, ID, NAME, PRICE, VER, TS)."""
    for i in range(rows):
        yield "usrt", i, f"item {i}", Decimal(i % 1000) / 4, 1, NOW


def produce(router: FakeRouter, rows: int) -> dict[int, int]:
    """``rows`` upserts to the group topic; returns its end offsets."""
    t = time.perf_counter()
    for n, (area, i, name, price, ver, ts) in enumerate(data(rows), 1):
        router.change("PARENT", "c", {"DATAAREAID": area, "ID": i, "NAME": name, "PRICE": price, "VER": ver,
                                      "TS": ts})
        if len(router.sent) >= 10_000:
            router.sent.clear()  # kept by FakeRouter for re-sends; not needed here
        if n % 100_000 == 0:
            console.print(f"  produced {n:,} rows ({n / (time.perf_counter() - t):,.0f}/s)")
    router.flush()
    router.sent.clear()
    return router.ends()


def new_db(dialect: str, name: str, tmp: Path, server: str) -> Db:
    return pg_db(server, name) if dialect == "postgresql" else sqlite_db(tmp, name)


def drop_db(db: Db, server: str) -> None:
    if db.dialect == "postgresql":
        import psycopg
        from psycopg import sql

        name = psycopg.conninfo.conninfo_to_dict(db.dsn)["dbname"]
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))
    else:
        path = Path(db.dsn.removeprefix("sqlite:///"))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def count_rows(db: Db) -> int:
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT count(*) FROM {d.qualified('ax', 'PARENT')}")
        n = int(cur.fetchone()[0])
        conn.rollback()
        return n
    finally:
        conn.close()


class BootstrapFailed(RuntimeError):
    pass


def run_bootstrap(db: Db, path: Path, log: Path, timeout: float, profile: Path | None = None) -> dict[str, float]:
    """``cdx channel bootstrap`` for ``db``: seconds, and the process's peak RSS and CPU (rusage). With
    ``profile``, under ``py-spy record`` (every thread, idle samples too) writing that file (raw
    flamegraph lines): the figures then include py-spy's."""
    argv = [sys.executable, "-m", "cdx.cli.main", "channel", "bootstrap", "--topology", str(path), "--channel", db.id]
    if profile is not None:
        argv = [str(Path(sys.executable).with_name("py-spy")), "record", "--threads", "--idle", "-r", "100",
                "-f", "raw", "-o", str(profile), "--", *argv]
    with log.open("ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        peak = PeakRss(proc.pid)
        peak.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # Popen.wait() gives no per-child rusage
        finally:
            watchdog.cancel()
            peak.done.set()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BootstrapFailed(f"{' '.join(argv[1:])} exited with {proc.returncode} after {seconds:.0f}s"
                              f"{' (killed: --timeout)' if seconds >= timeout else ''}; log {log}:\n"
                              f"{log.read_text(errors='replace')[-3000:]}")
    # ru_maxrss would count the pages the child shared with this (large) process before exec:
    # VmHWM, sampled while it runs, is the bootstrap's own peak.
    return {"seconds": seconds, "peak_rss_mib": peak.mib, "cpu_s": usage.ru_utime + usage.ru_stime}


class PeakRss(threading.Thread):
    """Samples ``VmHWM`` (the process's own peak resident set since exec) until ``done`` is set."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.mib, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.mib = max(self.mib, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
            self.done.wait(0.1)


def bootstrap_run(dialect: str, run: int, rows: int, ends: dict[int, int], topic: str, prefix: str, bootstrap: str,
                  tmp: Path, server: str, timeout: float, *, overhead: bool, profile: Path | None = None
                  ) -> dict[str, float]:
    run_dir = tmp / f"{dialect}-r{run}"
    run_dir.mkdir()
    db = new_db(dialect, f"boot_{dialect[:2]}_{prefix}_{run}", run_dir, server)
    try:
        path, _ = write_topology(run_dir, bootstrap, [db], prefix=prefix)
        got = run_bootstrap(db, path, run_dir / "bootstrap.log", timeout,
                            profile / f"{dialect}-r{run}.txt" if profile is not None else None)
        offsets = stored_offsets(db, topic)
        behind = {p: (offsets.get(p), e) for p, e in ends.items() if offsets.get(p, 0) < e}
        if behind:
            raise BootstrapFailed(f"{db.id}: stored offsets behind the topic ends after bootstrap: {behind}")
        have = count_rows(db)
        if have != rows:
            raise BootstrapFailed(f"{db.id}: {have:,} rows in ax.PARENT after bootstrap, expected {rows:,}")
        out = {"seconds": got["seconds"], "rows_per_s": rows / got["seconds"], "peak_rss_mib": got["peak_rss_mib"],
               "cpu_s": got["cpu_s"], "batches": len(sessions_of(db))}
        if overhead:  # the same command on a channel already caught up: the fixed cost
            out["noop_s"] = run_bootstrap(db, path, run_dir / "noop.log", timeout)["seconds"]
    except BaseException:
        console.print(f"  kept {run_dir} and the database {db.dsn} for inspection")
        raise
    drop_db(db, server)
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def baseline_pg(rows: int, server: str) -> float:
    """COPY into a temp table + one INSERT ... ON CONFLICT into a fresh table, one transaction."""
    from cdx.infra.postgres.launcher import create_database

    name = f"bench_boot_base_{uuid.uuid4().hex[:6]}"
    dsn = create_database(server, name)
    try:
        return copy_upsert(dsn, data(rows))
    finally:
        drop_db(Db(name, "postgresql", dsn), server)


def baseline_sqlite(rows: int, tmp: Path) -> float:
    """executemany INSERT into a fresh SQLite file, one transaction."""
    path = tmp / f"base-{uuid.uuid4().hex[:6]}.db"
    conn = sqlite3.connect(path)
    try:
        conn.execute('CREATE TABLE ax_PARENT ("DATAAREAID" TEXT, "ID" INTEGER, "NAME" TEXT, "PRICE" TEXT,'
                     ' "VER" INTEGER, "TS" TEXT, PRIMARY KEY ("DATAAREAID", "ID"))')
        conn.commit()
        start = time.perf_counter()
        with conn:
            conn.executemany("INSERT INTO ax_PARENT VALUES (?, ?, ?, ?, ?, ?)",
                             ((a, i, n, str(p), v, ts.isoformat()) for a, i, n, p, v, ts in data(rows)))
        return rows / (time.perf_counter() - start)
    finally:
        conn.close()
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher
    from cdx.infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.bootstrap")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the group topic (1M: --rows 1000000)")
    parser.add_argument("--dialects", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one bootstrap may take")
    parser.add_argument("--prefix", help="topic prefix; a group topic of that prefix holding --rows records already"
                        " is read again instead of producing a new one (while the broker runs)")
    parser.add_argument("--profile", type=Path, help="directory: run each bootstrap under py-spy (slower;"
                        " the figures are not comparable then)")
    args, _ = parser.parse_known_args(argv)
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    unknown = set(dialects) - {"postgresql", "sqlite"}
    if unknown:
        parser.error(f"unknown dialect(s) {sorted(unknown)}")
    bootstrap = launcher.up(1)
    server = pg.up() if "postgresql" in dialects else ""
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-bootstrap-"))
    prefix = args.prefix or f"bst{uuid.uuid4().hex[:8]}"
    _, topo = write_topology(tmp, bootstrap, [sqlite_db(tmp, "producer")], prefix=prefix)
    router = FakeRouter(topo)
    ends = router.ends()
    if sum(ends.values()) != args.rows:
        console.print(f"producing {args.rows:,} routed rows to {router.topic} ...")
        ends = produce(router, args.rows)
    assert sum(ends.values()) == args.rows, ends
    results: list[Result] = []
    failed = False
    try:
        for dialect in dialects:
            runs: list[dict[str, float]] = []
            bases: list[float] = []
            try:
                for r in range(args.runs):
                    bases.append(baseline_pg(args.rows, server) if dialect == "postgresql"
                                 else baseline_sqlite(args.rows, tmp))
                    runs.append(bootstrap_run(dialect, r, args.rows, ends, router.topic, prefix, bootstrap, tmp,
                                              server, args.timeout, overhead=r == 0, profile=args.profile))
                    console.print(f"  {dialect} run {r + 1}: " + ", ".join(f"{k} {v:,.2f}" for k, v in runs[-1].items())
                                  + f"; baseline {bases[-1]:,.0f} rows/s")
            except BootstrapFailed as exc:
                failed = True
                console.print(f"[red]{dialect} FAILED[/] (run {len(runs) + 1}): {exc}")
            if not runs:
                continue
            med = {k: statistics.median(x[k] for x in runs if k in x) for k in runs[0]}
            base = statistics.median(bases)
            base_name = "raw COPY+upsert, fresh table" if dialect == "postgresql" else "sqlite3 executemany, 1 tx"
            extra = {"dialect": dialect, "rows": args.rows, "median": med, "all_runs": runs, "baseline_runs": bases}
            results += [
                Result("bootstrap", f"{dialect}: new channel, {args.rows:,} rows", "rows/s", med["rows_per_s"], base,
                       base_name, len(runs), extra),
                Result("bootstrap", f"{dialect}: time to receive {args.rows:,} rows", "ms", 1000 * med["seconds"],
                       1000 * args.rows / base, base_name, len(runs), {"dialect": dialect, "rows": args.rows,
                                                                       "seconds": med["seconds"]}),
                Result("bootstrap", f"{dialect}: time when already caught up (fixed cost)", "ms", 1000 * med["noop_s"],
                       runs=1, extra={"dialect": dialect, "seconds": med["noop_s"]}),
                Result("bootstrap", f"{dialect}: CPU of the bootstrap process (user + system)", "s", med["cpu_s"],
                       runs=len(runs), extra={"dialect": dialect, "cpu_runs": [x["cpu_s"] for x in runs]}),
                Result("bootstrap", f"{dialect}: peak RSS of the bootstrap process", "MiB", med["peak_rss_mib"],
                       runs=len(runs), extra={"dialect": dialect, "cpu_s": med["cpu_s"]}),
            ]
    finally:
        if not failed:
            shutil.rmtree(tmp, ignore_errors=True)
    show(results, f"bootstrap: a new channel receiving {args.rows:,} rows (cdx channel bootstrap, from process start)")
    save(results, "bootstrap")
    return results


if __name__ == "__main__":
    main()
