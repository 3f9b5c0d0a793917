"""End to end: HQ row changes until every channel is current, and propagation latency under a steady load.

    python -m bench.e2e [--changes 100000] [--runs 3] [--channels 2] [--hq postgresql|sqlite]
                        [--channel-dialect sqlite|postgresql] [--rate 1000] [--seconds 20]

    (the 1M figure: ``python -m bench.e2e --changes 1000000 --runs 1``)

Set-up (once, untimed): a fresh HQ database with two tracked tables, ``dbo.PRODUCT`` (DATAAREAID,
ID bigint key, NAME, PRICE numeric(18,4), VER bigint, MODIFIED timestamp) and ``dbo.PROBE`` (SEQ
bigint key, DATAAREAID, NOTE); a topology with one channel data group of ``--channels`` channel
databases (3 partitions per topic); change tracking enabled; then the real processes ``cdx
capture``, ``cdx route`` and ``cdx sink`` (one each, product defaults, logs in a temporary folder),
and a first PRODUCT row + probe that must reach every channel before anything is timed.

Per run (``--runs``, every figure is the median over the runs):

1. **Throughput**: ``--changes`` HQ row changes on a fresh ID range, in HQ transactions of
   ``--batch`` (5,000) rows: 60 % inserts of new rows, then 40 % updates of rows just inserted
   (``VER = VER + 1``; deterministic). The updates start once the capture has published the inserts
   (its Prometheus counter): change tracking returns *net* changes, so an update of a row whose
   insert was not captured yet would merge with it and the pipeline would carry fewer records, a
   timing-dependent number; this way it carries exactly ``--changes``. Timed: from the start of the
   first HQ write until every channel database holds the final HQ state of the range (``COUNT(*)``
   and ``SUM(VER)``, polled every 0.5 s, or 10x the query time when that is longer); reported as
   HQ changes/s.
   **Baseline**: the same final rows read from HQ (keyset pages of 5,000) and upserted with the
   channel dialect's bulk upsert (PostgreSQL: COPY + ``INSERT ... ON CONFLICT``; SQLite:
   ``executemany``), 5,000 rows per transaction, into a fresh table of every channel database:
   rows/s of a raw database copy into all the channels.
2. **Steady load**: with the pipeline idle, ``--rate`` HQ changes/s for ``--seconds``, as one HQ
   transaction every 10 ms, each with one ``dbo.PROBE`` insert (sequence number) and
   ``rate/100 - 1`` PRODUCT changes (60 % inserts, 40 % updates of rows inserted earlier in the
   phase). The probe's commit time is taken right after
   the HQ commit; one poller thread per channel database queries ``SEQ >= lowest unseen`` every
   5 ms and notes when each probe became visible (start of the query that returned it). Latency =
   seen - committed for every (probe, channel): p50/p95/p99/max, probes seen and missing.
   **Baseline** (the measurement's own floor, same time, same schedule): a second writer inserts
   the same probes directly into a separate database of the channel dialect, watched by the same
   kind of poller.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from bench import cpu, stages
from bench.common import Result, console, percentiles, save, show
from cdx.demo.processes import ProcessGroup
from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType, connect, get_dialect

ENTITY = "usrt"
SPAN = 10**9  # one run's ID range
T0 = dt.datetime(2026, 1, 1)
PRODUCT = [
    ColumnInfo("DATAAREAID", LogicalType.STRING, nullable=False, length=4),
    ColumnInfo("ID", LogicalType.INT64, nullable=False, primary_key=True, key_position=1),
    ColumnInfo("NAME", LogicalType.STRING, length=60),
    ColumnInfo("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
    ColumnInfo("VER", LogicalType.INT64),
    ColumnInfo("MODIFIED", LogicalType.TIMESTAMP),
]
PROBE = [
    ColumnInfo("SEQ", LogicalType.INT64, nullable=False, primary_key=True, key_position=1),
    ColumnInfo("DATAAREAID", LogicalType.STRING, nullable=False, length=4),
    ColumnInfo("NOTE", LogicalType.STRING, length=40),
]
NAMES = [c.name for c in PRODUCT]

TOPOLOGY = """kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 3}}
hq: {{name: hq, dialect: {hq_dialect}, dsn: "{hq_dsn}"}}
jobs: [{{id: "1", direction: download}}]
subjobs:
  - {{id: Product, hq_table: dbo.PRODUCT, fields: [ID, NAME, PRICE, VER, MODIFIED], scheduled_by: ["1"]}}
  - {{id: Probe, hq_table: dbo.PROBE, fields: [SEQ, NOTE], scheduled_by: ["1"]}}
channel_data_groups:
  - id: g
    legal_entities: [{entity}]
    channels:
{channels}
distribution_schedules: [{{id: S, direction: download, jobs: ["1"], channel_data_groups: [g]}}]
"""


# ----------------------------------------------------------------------------------------------- databases
@dataclass
class Db:
    """One database: dialect name and DSN; ``open()`` gives a new connection."""

    name: str
    dialect_name: str
    dsn: str

    @property
    def dialect(self) -> Dialect:
        return get_dialect(self.dialect_name)

    def open(self) -> Connection:
        return connect(self.dialect_name, self.dsn)


def split(s: int, e: int) -> tuple[range, range]:
    """Changes ``[s, e)`` of a run: (insert offsets, update offsets); 60 % inserts, updates trail them."""
    return range(s * 3 // 5, e * 3 // 5), range(s - s * 3 // 5, e - e * 3 // 5)


def expected_state(n: int) -> tuple[int, int]:
    """(rows, SUM(VER)) of a range after ``n`` changes: every change adds one to the sum."""
    return n * 3 // 5, n


class HqWriter:
    """Writes the deterministic workload into HQ (the caller commits)."""

    def __init__(self, db: Db) -> None:
        self.db, self.d = db, db.dialect
        self.conn = db.open()
        d, q = self.d, self.d.quote_ident
        ph = d.placeholder
        self.product, self.probe = d.qualified("dbo", "PRODUCT"), d.qualified("dbo", "PROBE")
        cols = ", ".join(q(c) for c in NAMES)
        if d.name == "postgresql":  # generated server-side: the writer costs the pipeline's 2 cores little
            self.insert_sql = (f"INSERT INTO {self.product} ({cols}) SELECT %s, i, 'product ' || i,"
                               " (i %% 100000) / 100.0, 1, %s::timestamp + make_interval(secs => (i %% 10000000)::int)"
                               " FROM generate_series(%s::bigint, %s::bigint) AS i")
        else:
            self.insert_sql = f"INSERT INTO {self.product} ({cols}) VALUES ({', '.join([ph] * len(NAMES))})"
        self.update_sql = (f"UPDATE {self.product} SET {q('VER')} = {q('VER')} + 1, {q('NAME')} = {ph},"
                           f" {q('MODIFIED')} = {ph} WHERE {q('ID')} >= {ph} AND {q('ID')} < {ph}")
        self.insert_probe = (f"INSERT INTO {self.probe} ({q('SEQ')}, {q('DATAAREAID')}, {q('NOTE')})"
                             f" VALUES ({ph}, {ph}, {ph})")

    def begin(self) -> None:
        if self.d.name == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.commit()

    def insert(self, lo: int, hi: int) -> None:
        """New rows with IDs ``[lo, hi)``, ``VER = 1``."""
        if hi <= lo:
            return
        if self.d.name == "postgresql":
            self.conn.execute(self.insert_sql, (ENTITY, T0, lo, hi - 1))
            return
        enc = self.d.encode
        self.conn.executemany(self.insert_sql, [
            (ENTITY, i, f"product {i}", enc(Decimal(i % 100000) / 100), 1,
             enc(T0 + dt.timedelta(seconds=i % 10_000_000))) for i in range(lo, hi)])

    def update(self, lo: int, hi: int, tag: int) -> None:
        """Rows ``[lo, hi)``: ``VER = VER + 1``, a new NAME and MODIFIED."""
        if hi > lo:
            self.conn.execute(self.update_sql, (f"updated {tag}", self.d.encode(T0 + dt.timedelta(seconds=tag)),
                                                lo, hi))

    def changes(self, base: int, s: int, e: int) -> None:
        """Changes ``[s, e)`` of the interleaved mix starting at ``base``: the inserts, then the updates."""
        ins, upd = split(s, e)
        self.insert(base + ins.start, base + ins.stop)
        self.update(base + upd.start, base + upd.stop, s)

    def probe_row(self, seq: int) -> None:
        self.conn.execute(self.insert_probe, (seq, ENTITY, f"probe {seq}"))

    def state(self, base: int) -> tuple[int, int]:
        return range_state(self.conn, self.d, self.product, base)


def range_state(conn: Connection, d: Dialect, table: str, base: int) -> tuple[int, int]:
    """(COUNT(*), SUM(VER)) of the IDs ``[base, base + SPAN)``; (-1, -1) while the table does not exist."""
    q, ph = d.quote_ident, d.placeholder
    try:
        row = conn.execute(f"SELECT COUNT(*), COALESCE(SUM({q('VER')}), 0) FROM {table}"
                           f" WHERE {q('ID')} >= {ph} AND {q('ID')} < {ph}", (base, base + SPAN)).fetchone()
        conn.rollback()
        return int(row[0]), int(row[1])
    except Exception:
        conn.rollback()
        return -1, -1


def create_hq(db: Db) -> None:
    from cdx.connectors.capture.tracking import open_tracker

    d, conn = db.dialect, db.open()
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        d.create_table(conn, "dbo", "PRODUCT", PRODUCT, ["ID"])
        d.create_table(conn, "dbo", "PROBE", PROBE, ["SEQ"])
    conn.close()
    tracker = open_tracker(db.dialect_name, db.dsn)
    try:
        tracker.enable(["dbo.PRODUCT", "dbo.PROBE"])
    finally:
        tracker.conn.close()


# ----------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, names: Sequence[str]) -> dict[str, float]:
    """Sum of every sample of each counter in ``names`` at a Prometheus endpoint (empty if unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric = line.split("{", 1)[0].split(" ", 1)[0]
        if metric in out:
            out[metric] += float(line.rsplit(" ", 1)[1])
    return out


class Stages(Protocol):
    """What ``Bench`` needs of a pipeline under test (cdx's ``Pipeline``, the peer's Connect worker)."""

    def check(self) -> None: ...
    def tails(self, lines: int = 20) -> str: ...
    def counters(self) -> dict[str, float]: ...
    def captured(self) -> float: ...
    def pids(self) -> dict[str, int]: ...
    def stop(self) -> None: ...


class Pipeline:
    """``cdx capture``, ``cdx route`` and ``cdx sink`` as real processes, with their metrics ports."""

    COUNTERS = {"capture": ["cdx_capture_changes_total"],
                "router": ["cdx_stage_records_total", "cdx_router_records_out_total"],
                "sink": ["cdx_sink_applied_total", "cdx_stage_batches_total"]}

    def __init__(self, topology: Path, tmp: Path, poll_interval: float) -> None:
        self.group = ProcessGroup(tmp / "logs", {**os.environ, "PYTHONUNBUFFERED": "1"})
        self.ports = {name: free_port() for name in self.COUNTERS}
        t = ["--topology", str(topology)]
        self.group.start("capture", ["capture", *t, "--poll-interval", str(poll_interval),
                                     "--metrics-port", str(self.ports["capture"])])
        self.group.start("router", ["route", *t, "--datadir", str(tmp / "router-data"),
                                    "--metrics-port", str(self.ports["router"])])
        self.group.start("sink", ["sink", *t, "--metrics-port", str(self.ports["sink"])])

    def check(self) -> None:
        failed = self.group.failed()
        if failed:
            raise SystemExit(f"pipeline process(es) exited: {', '.join(r.name for r in failed)}\n" + self.tails())

    def tails(self, lines: int = 20) -> str:
        parts = []
        for role in self.group.roles.values():
            try:
                tail = role.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tail = []
            state = "running" if role.running else f"exited {role.proc.returncode}"
            parts.append(f"--- {role.name} ({state}), {role.log}:\n" + "\n".join(tail))
        return "\n".join(parts)

    def counters(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for role, names in self.COUNTERS.items():
            out.update(scrape(self.ports[role], names))
        return out

    def captured(self) -> float:
        """Changes the capture has published so far (its counter)."""
        return scrape(self.ports["capture"], ["cdx_capture_changes_total"]).get("cdx_capture_changes_total", 0.0)

    def batches(self) -> dict[str, float]:
        """Transactions each role committed so far (``cdx_stage_batches_total``; 0 where not exported)."""
        return {role: scrape(port, ["cdx_stage_batches_total"]).get("cdx_stage_batches_total", 0.0)
                for role, port in self.ports.items()}

    def pids(self) -> dict[str, int]:
        """The process of each role (for its CPU time from /proc)."""
        return {name: role.proc.pid for name, role in self.group.roles.items()}

    def stop(self) -> None:
        self.group.stop_all()


# ----------------------------------------------------------------------------------------------- probes
class Poller(threading.Thread):
    """Polls ``table`` for probe sequence numbers ``>= lowest unseen`` every ``interval`` seconds and
    notes when each was first seen (``perf_counter`` at the start of the query that returned it)."""

    def __init__(self, db: Db, table: tuple[str, str], first: int, interval: float = 0.005) -> None:
        super().__init__(name=f"poller-{db.name}", daemon=True)
        self.db, self.low, self.interval = db, first, interval
        d = db.dialect
        self.sql = (f"SELECT {d.quote_ident('SEQ')} FROM {d.qualified(*table)}"
                    f" WHERE {d.quote_ident('SEQ')} >= {d.placeholder}")
        self.seen: dict[int, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        conn = self.db.open()
        try:
            while not self.stopped.is_set():
                start = time.perf_counter()
                try:
                    rows = conn.execute(self.sql, (self.low,)).fetchall()
                except Exception:  # the table does not exist yet, or the database is busy
                    rows = []
                conn.rollback()
                for (seq,) in rows:
                    self.seen.setdefault(int(seq), start)
                while self.low in self.seen:
                    self.low += 1
                self.stopped.wait(self.interval)
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


class Schedule:
    """``count`` ticks ``interval`` apart from ``t0`` (a late tick runs at once: no drift, no skipping)."""

    def __init__(self, t0: float, interval: float, count: int) -> None:
        self.t0, self.interval, self.count = t0, interval, count

    def __iter__(self) -> Iterator[int]:
        for k in range(self.count):
            delay = self.t0 + k * self.interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield k


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    expected: int = 0
    missing: int = 0

    def summary(self) -> dict[str, float]:
        out = percentiles(self.samples_ms)
        if self.samples_ms:
            out["max"] = max(self.samples_ms)
        out.update(samples=len(self.samples_ms), expected=self.expected, missing=self.missing)
        return out


def latencies(committed: dict[int, float], pollers: Sequence[Poller]) -> Latency:
    out = Latency(expected=len(committed) * len(pollers))
    for p in pollers:
        for seq, t in committed.items():
            seen = p.seen.get(seq)
            if seen is None:
                out.missing += 1
            else:
                out.samples_ms.append((seen - t) * 1000)
    return out


# ----------------------------------------------------------------------------------------------- phases
@dataclass
class Bench:
    args: argparse.Namespace
    hq: HqWriter
    channels: list[Db]
    floor: Db
    pipeline: Stages
    next_seq: int = 1
    schema: str = "ax"  # the channel tables' schema
    topology: Path | None = None
    """cdx's topology: the steady phase then also says where the latency goes (``bench.stages``)."""

    def wait(self, what: str, done: Callable[[], bool], timeout: float, interval: float = 0.01,
             required: bool = True) -> bool:
        """Poll ``done()`` (and check the processes) until true; False at the timeout unless ``required``."""
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return True
            self.pipeline.check()
            if time.monotonic() > deadline:
                if not required:
                    console.print(f"[red]{what}: not done within {timeout:.0f}s[/]")
                    return False
                raise SystemExit(f"{what}: not done within {timeout:.0f}s\n" + self.pipeline.tails())
            time.sleep(interval)

    def wait_current(self, base: int, want: tuple[int, int], timeout: float) -> float:
        """Until every channel holds ``want`` for the range; polled every 0.5 s, or 10x the query time."""
        conns = [(c.open(), c.dialect) for c in self.channels]
        tables = [d.qualified(self.schema, "PRODUCT") for _, d in conns]
        last: list[tuple[int, int]] = []
        pause = [0.5]

        def current() -> bool:
            t = time.perf_counter()
            last[:] = [range_state(conn, d, table, base) for (conn, d), table in zip(conns, tables, strict=True)]
            pause[0] = max(0.5, 10 * (time.perf_counter() - t))
            return all(s == want for s in last)

        try:
            deadline = time.monotonic() + timeout
            while True:
                if current():
                    return time.perf_counter()
                self.pipeline.check()
                if time.monotonic() > deadline:
                    raise SystemExit(f"channels not current within {timeout:.0f}s: want {want}, have {last}\n"
                                     + self.pipeline.tails())
                time.sleep(pause[0])
        finally:
            for conn, _ in conns:
                conn.close()

    def probe(self) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq

    def ready(self) -> float:
        """A first PRODUCT row (ID 0, inserted and updated) and a probe; seconds until every channel has both."""
        t0 = time.perf_counter()
        self.hq.begin()
        self.hq.changes(0, 0, 2)
        seq = self.probe()
        self.hq.probe_row(seq)
        self.hq.commit()
        pollers = [Poller(c, (self.schema, "PROBE"), seq, 0.05) for c in self.channels]
        for p in pollers:
            p.start()
        try:
            self.wait("pipeline start", lambda: all(seq in p.seen for p in pollers), timeout=180, interval=0.2)
        finally:
            for p in pollers:
                p.stop()
        self.wait_current(0, expected_state(2), timeout=60)
        return time.perf_counter() - t0

    def throughput(self, run: int) -> dict[str, Any]:
        n, batch, base = self.args.changes, self.args.batch, SPAN * (1 + run)
        inserts = n * 3 // 5
        before = self.pipeline.counters()
        if not before:
            raise SystemExit("the pipeline's metrics do not answer\n" + self.pipeline.tails())
        published = self.pipeline.captured() + inserts
        hq = self.hq
        cpu_before = cpu.sample(self.pipeline.pids())
        t0 = time.perf_counter()
        for s in range(0, inserts, batch):
            hq.begin()
            hq.insert(base + s, base + min(inserts, s + batch))
            hq.commit()
        # updates once the inserts are published: change tracking would merge an update with a pending
        # insert of the same row (net changes), and the pipeline would carry fewer, timing-dependent records
        self.wait("capture of the inserts", lambda: self.pipeline.captured() >= published,
                  timeout=max(300.0, n / 1000), interval=0.05)
        t_updates = time.perf_counter() - t0
        for s in range(0, n - inserts, batch):
            hq.begin()
            hq.update(base + s, base + min(n - inserts, s + batch), s)
            hq.commit()
        written = time.perf_counter() - t0
        want = expected_state(n)
        done = self.wait_current(base, want, timeout=max(600.0, n / 300))
        seconds = done - t0
        used = cpu.spent(cpu_before, cpu.sample(self.pipeline.pids()))
        have = hq.state(base)
        if have != want:
            raise SystemExit(f"HQ range holds {have}, expected {want}: the workload is wrong")
        after = self.pipeline.counters()
        delta = {k.removeprefix("cdx_").removesuffix("_total"): after.get(k, 0) - before.get(k, 0) for k in after}
        return {"changes": n, "seconds": seconds, "changes_per_s": n / seconds, "hq_write_s": written,
                "updates_started_s": t_updates, "rows": want[0], "base": base, "cpu_s": used,
                "cpu_s_per_100k": cpu.per_100k(used, n), "loadavg": os.getloadavg(), **delta}

    def copy_baseline(self, base: int) -> tuple[int, float]:
        """Raw copy of the range's final rows from HQ into a fresh table in every channel: (rows, seconds)."""
        hd = self.hq.d
        targets = []
        for c in self.channels:
            conn, d = c.open(), c.dialect
            with d.transaction(conn):
                d.ensure_schema(conn, "bench")
                conn.execute(f"DROP TABLE IF EXISTS {d.qualified('bench', 'PRODUCT')}")
                d.create_table(conn, "bench", "PRODUCT", PRODUCT, ["ID"])
            targets.append((conn, d))
        hq = self.hq.db.open()
        q, ph = hd.quote_ident, hd.placeholder
        page = (f"SELECT {', '.join(q(c) for c in NAMES)} FROM {hd.qualified('dbo', 'PRODUCT')}"
                f" WHERE {q('ID')} >= {ph} AND {q('ID')} < {ph} ORDER BY {q('ID')} LIMIT 5000")
        rows = 0
        try:
            t0 = time.perf_counter()
            lo = base
            while True:
                data = [[hd.decode(c, v) if v is not None else None for c, v in zip(PRODUCT, r, strict=True)]
                        for r in hq.execute(page, (lo, base + SPAN)).fetchall()]
                hq.rollback()
                if not data:
                    break
                for conn, d in targets:
                    with d.transaction(conn):
                        d.upsert_rows(conn, "bench", "PRODUCT", NAMES, ["ID"], data)
                rows += len(data)
                lo = data[-1][1] + 1
            seconds = time.perf_counter() - t0
        finally:
            hq.close()
            for conn, _ in targets:
                conn.close()
        return rows, seconds

    def idle(self, seconds: float) -> dict[str, float]:
        """CPU-milliseconds per second each pipeline process spends with nothing to carry (``--idle``)."""
        before = cpu.sample(self.pipeline.pids())
        time.sleep(seconds)
        used = cpu.spent(before, cpu.sample(self.pipeline.pids()))
        self.pipeline.check()
        return {name: s * 1000 / seconds for name, s in used.items()}

    def steady(self, run: int) -> dict[str, Any]:
        rate, seconds = self.args.rate, self.args.seconds
        per_txn = max(1, round(rate * 0.01))  # changes per HQ transaction, one of them the probe
        interval = per_txn / rate
        count = max(1, int(seconds / interval))
        base = SPAN * (100 + run)
        first = self.next_seq
        self.next_seq += count
        pollers = [Poller(c, (self.schema, "PROBE"), first) for c in self.channels]
        floor_poller = Poller(self.floor, ("bench", "PROBE"), first)
        for p in [*pollers, floor_poller]:
            p.start()
        committed: dict[int, float] = {}
        floor_committed: dict[int, float] = {}
        spies = self._spy(run)
        batches = getattr(self.pipeline, "batches", dict)
        batches_before = batches()
        cpu_before = cpu.sample(self.pipeline.pids())
        wall = time.time() - time.perf_counter()
        t0 = time.perf_counter() + 0.05
        floor = threading.Thread(target=self._floor_writer, args=(Schedule(t0, interval, count), first,
                                                                   floor_committed), daemon=True)
        floor.start()
        hq, product = self.hq, per_txn - 1
        for k in Schedule(t0, interval, count):
            hq.begin()
            hq.changes(base, k * product, (k + 1) * product)
            hq.probe_row(first + k)
            hq.commit()
            committed[first + k] = time.perf_counter()
        write_s = time.perf_counter() - t0
        floor.join()
        self.wait("steady-load probes", lambda: all(len(p.seen) >= count for p in pollers)
                  and len(floor_poller.seen) >= count, timeout=60, interval=0.1, required=False)
        for p in [*pollers, floor_poller]:
            p.stop()
        self.wait_current(base, expected_state(count * product), timeout=120)
        used = cpu.spent(cpu_before, cpu.sample(self.pipeline.pids()))
        txns = {k: v - batches_before.get(k, 0.0) for k, v in batches().items()}
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            spy.wait(60)
        lat, base_lat = latencies(committed, pollers), latencies(floor_committed, [floor_poller])
        # per probe, the slowest channel: when every channel had it
        every = [max(p.seen[s] for p in pollers) - t for s, t in committed.items() if all(s in p.seen for p in pollers)]
        where = {} if self.topology is None else stages.breakdown(
            self.topology, first, count, {s: t + wall for s, t in committed.items()},
            {s: t + wall for s, t in pollers[0].seen.items()})
        return {"latency": lat.summary(), "stages": where, "loadavg": os.getloadavg(), "floor": base_lat.summary(),
                "changes": count * per_txn,
                "write_s": write_s, "achieved_rate": count * per_txn / write_s, "cpu_s": used, "batches": txns,
                "cpu_s_per_100k": cpu.per_100k(used, count * per_txn),
                "all_channels": {**percentiles([x * 1000 for x in every]), "max": max(every, default=0) * 1000}}

    def _spy(self, run: int) -> list[subprocess.Popen[bytes]]:
        """With ``--py-spy DIR``: ``py-spy record --gil`` (stacks of the thread holding the GIL) of every
        pipeline process for the steady phase, into ``DIR/<role>-<run>.txt`` (py-spy's own CPU is not
        counted: it is no child of the pipeline's processes)."""
        folder = getattr(self.args, "py_spy", None)
        if not folder:
            return []
        Path(folder).mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "py-spy"
        spy = str(exe) if exe.exists() else "py-spy"
        return [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--nonblocking", "--gil",
                                  "--threads", "--format", "raw", "--output", f"{folder}/{name}-{run + 1}.txt"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for name, pid in self.pipeline.pids().items()]

    def _floor_writer(self, schedule: Schedule, first: int, committed: dict[int, float]) -> None:
        conn, d = self.floor.open(), self.floor.dialect
        sql = (f"INSERT INTO {d.qualified('bench', 'PROBE')} ({d.quote_ident('SEQ')}, {d.quote_ident('DATAAREAID')},"
               f" {d.quote_ident('NOTE')}) VALUES ({d.placeholder}, {d.placeholder}, {d.placeholder})")
        try:
            for k in schedule:
                if d.name == "sqlite":
                    conn.execute("BEGIN IMMEDIATE")
                conn.execute(sql, (first + k, ENTITY, f"probe {first + k}"))
                conn.commit()
                committed[first + k] = time.perf_counter()
        finally:
            conn.close()


# ----------------------------------------------------------------------------------------------- main
def databases(args: argparse.Namespace, tmp: Path) -> tuple[Db, list[Db], Db]:
    admin = None
    if "postgresql" in (args.hq, args.channel_dialect):
        from cdx.infra.postgres import launcher as pg

        admin = pg.up()

    def make(name: str, dialect: str) -> Db:
        if dialect == "sqlite":
            return Db(name, "sqlite", f"sqlite:///{tmp}/{name}.db")
        from cdx.infra.postgres import launcher as pg

        return Db(name, "postgresql", pg.create_database(str(admin), f"bench_e2e_{name}"))

    channels = [make(f"c{i}", args.channel_dialect) for i in range(1, args.channels + 1)]
    floor = make("floor", args.channel_dialect)
    conn, d = floor.open(), floor.dialect
    with d.transaction(conn):
        d.ensure_schema(conn, "bench")
        d.create_table(conn, "bench", "PROBE", PROBE, ["SEQ"])
    conn.close()
    return make("hq", args.hq), channels, floor


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher

    parser = argparse.ArgumentParser(prog="python -m bench.e2e")
    parser.add_argument("--changes", type=int, default=100_000, help="HQ row changes per throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--hq", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--channel-dialect", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rate", type=float, default=1000.0, help="HQ changes/s of the steady load")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the steady load")
    parser.add_argument("--batch", type=int, default=5000, help="HQ changes per transaction (throughput run)")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="cdx capture --poll-interval")
    parser.add_argument("--steady-only", action="store_true",
                        help="skip the throughput phase and its baseline (steady-load CPU and latency only)")
    parser.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                        help="first measure each process's CPU with the pipeline idle for SECONDS")
    parser.add_argument("--py-spy", metavar="DIR", help="profile every pipeline process in the steady phase"
                        " with py-spy record (collapsed stacks in DIR/<role>-<run>.txt)")
    args, _ = parser.parse_known_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the processes
    started = time.perf_counter()
    bootstrap = launcher.up(1)
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-e2e-"))
    hq_db, channels, floor = databases(args, tmp)
    create_hq(hq_db)
    prefix = f"bench{os.getpid()}x{int(time.time()) % 100000}"
    channel_lines = "\n".join(f'      - {{id: {c.name}, database: {{dialect: {c.dialect_name}, dsn: "{c.dsn}"}}}}'
                              for c in channels)
    path = tmp / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=bootstrap, prefix=prefix, hq_dialect=hq_db.dialect_name,
                                    hq_dsn=hq_db.dsn, entity=ENTITY, channels=channel_lines))
    where = f"HQ {args.hq}, {args.channels} {args.channel_dialect} channels"
    console.print(f"e2e: {where}; logs and databases in {tmp}")
    pipeline = Pipeline(path, tmp, args.poll_interval)
    bench = Bench(args, HqWriter(hq_db), channels, floor, pipeline, topology=path)
    runs: list[dict[str, Any]] = []
    try:
        console.print(f"pipeline ready (first row in every channel) after {bench.ready():.1f}s")
        if args.idle:
            idle = bench.idle(args.idle)
            console.print(f"idle for {args.idle:g}s, CPU-milliseconds per second by process: "
                          + ", ".join(f"{name} {ms:,.1f}" for name, ms in idle.items()))
        for run in range(args.runs):
            tp: dict[str, Any] = {}
            if not args.steady_only:
                tp = bench.throughput(run)
                rows, base_s = bench.copy_baseline(tp["base"])
                tp.update(baseline_rows=rows, baseline_s=base_s, baseline_rows_per_s=rows / base_s)
                print_throughput(run, tp, len(channels))
            st = bench.steady(run)
            lat, fl = st["latency"], st["floor"]
            console.print(f"run {run + 1}: steady {st['achieved_rate']:,.0f} changes/s for {st['write_s']:.1f}s:"
                          f" latency {fmt(lat)}; floor (direct write) {fmt(fl)}; CPU {cpu_line(st)}")
            if any(st["batches"].values()):
                console.print(f"run {run + 1}: steady: transactions (cdx_stage_batches_total) and CPU-ms per"
                              " transaction: " + ", ".join(f"{k} {n:,.0f} ({st['cpu_s'][k] * 1000 / n:,.2f} ms)"
                                                           for k, n in st["batches"].items() if n))
            console.print(f"run {run + 1}: where the steady latency goes (first channel): {stages.line(st['stages'])};"
                          f" load average {os.getloadavg()[0]:.1f}")
            runs.append({"throughput": tp, "steady": st})
    except BaseException:
        console.print(pipeline.tails())
        raise
    finally:
        pipeline.stop()
    results = report(args, runs, where)
    console.print(f"total {time.perf_counter() - started:.0f}s; logs in {tmp / 'logs'}")
    return results


def print_throughput(run: int, tp: dict[str, Any], channels: int) -> None:
    console.print(f"run {run + 1}: {tp['changes']:,} changes current in every channel after "
                  f"{tp['seconds']:.1f}s = {tp['changes_per_s']:,.0f} changes/s (updates started at "
                  f"{tp['updates_started_s']:.1f}s, HQ writes done at {tp['hq_write_s']:.1f}s; published "
                  f"{tp.get('capture_changes', 0):,.0f}, router in "
                  f"{tp.get('stage_records', 0):,.0f} / out {tp.get('router_records_out', 0):,.0f}, "
                  f"applied {tp.get('sink_applied', 0):,.0f} in {tp.get('stage_batches', 0):,.0f} batches); "
                  f"raw copy of {tp['baseline_rows']:,} rows into {channels} channels {tp['baseline_s']:.1f}s = "
                  f"{tp['baseline_rows_per_s']:,.0f} rows/s")
    console.print(f"run {run + 1}: CPU {cpu_line(tp)}")


def cpu_line(phase: dict[str, Any]) -> str:
    """``12.3 s per 100,000 changes (capture 3.1 s, router 6.0 s, sink 3.2 s)`` of one phase."""
    parts = ", ".join(f"{name} {s:,.1f} s" for name, s in phase["cpu_s"].items())
    return f"{phase['cpu_s_per_100k']:,.1f} s per 100,000 changes ({parts})"


def fmt(s: dict[str, float]) -> str:
    figures = ", ".join(f"{k} {s[k]:,.1f} ms" for k in ("p50", "p95", "p99", "max") if k in s)
    return f"{figures} ({s['samples']:,.0f} of {s['expected']:,.0f} seen, {s['missing']:,.0f} missing)"


def report(args: argparse.Namespace, runs: list[dict[str, Any]], where: str) -> list[Result]:
    n, r = args.changes, len(runs)
    tps = [x["throughput"] for x in runs if x["throughput"]]
    sts = [x["steady"] for x in runs]
    results = [
        Result("e2e", f"throughput: HQ changes/s until every channel is current, {n:,} changes ({where})", "/s",
               median([t["changes_per_s"] for t in tps]), median([t["baseline_rows_per_s"] for t in tps]),
               "raw copy of the final rows: rows/s", r, {"runs": tps}),
        Result("e2e", f"same, seconds ({n * 3 // 5:,} final rows)", "s", median([t["seconds"] for t in tps]),
               median([t["baseline_s"] for t in tps]), "raw copy, s", r),
    ]
    for k in ("p50", "p95", "p99", "max"):
        results.append(Result("e2e", f"steady {args.rate:,.0f} changes/s for {args.seconds:g}s: latency {k}", "ms",
                              median([s["latency"].get(k, 0.0) for s in sts]),
                              median([s["floor"].get(k, 0.0) for s in sts]), "poller floor, direct write", r,
                              {"runs": sts} if k == "p50" else {}))
    results.append(Result("e2e", f"CPU-seconds per 100,000 changes, capture + router + sink (throughput, {n:,})",
                          "s", median([t["cpu_s_per_100k"] for t in tps]), None, "", r,
                          {"steady": median([s["cpu_s_per_100k"] for s in sts])}))
    show(results, "e2e: HQ -> capture -> router -> sink -> channels")
    seen = sum(s["latency"]["samples"] for s in sts)
    missing = sum(s["latency"]["missing"] for s in sts)
    pct = {k: median([s["latency"].get(k, 0.0) for s in sts]) for k in ("p50", "p95", "p99", "max")}
    floor = {k: median([s["floor"].get(k, 0.0) for s in sts]) for k in ("p50", "p95", "p99", "max")}
    every = {k: median([s["all_channels"].get(k, 0.0) for s in sts]) for k in ("p50", "p95", "p99", "max")}
    console.print(f"throughput: {median([t['changes_per_s'] for t in tps]):,.0f} changes/s, "
                  f"{median([t['seconds'] for t in tps]):.1f}s for {n:,} changes (median of {r}); raw copy "
                  f"{median([t['baseline_rows_per_s'] for t in tps]):,.0f} rows/s")
    console.print("latency HQ commit -> channel commit (medians over runs): "
                  + ", ".join(f"{k} {v:,.1f} ms" for k, v in pct.items())
                  + f"; {seen:,} (probe, channel) samples seen, {missing:,} missing")
    console.print("  until every channel had it: " + ", ".join(f"{k} {v:,.1f} ms" for k, v in every.items()))
    console.print("  measurement floor (same poller, probes written directly): "
                  + ", ".join(f"{k} {v:,.1f} ms" for k, v in floor.items()))
    console.print(f"CPU-seconds per 100,000 changes (capture + router + sink, /proc utime+stime): throughput "
                  f"{median([t['cpu_s_per_100k'] for t in tps]):,.1f} s, steady load "
                  f"{median([s['cpu_s_per_100k'] for s in sts]):,.1f} s (medians)")
    for phase, xs in (("throughput", tps), ("steady load", sts)):
        if xs:
            console.print(f"  {phase}, CPU-seconds per 100,000 changes by process (medians): " + ", ".join(
                f"{name} {median([cpu.per_100k({name: x['cpu_s'][name]}, x['changes']) for x in xs]):,.1f} s"
                for name in xs[0]["cpu_s"]))
    path = save(results, "e2e")
    console.print(f"saved {path}")
    return results


if __name__ == "__main__":
    main()
