"""cdx against the tool a retailer would pick instead: Debezium's PostgreSQL source and JDBC sink on Kafka
Connect standalone, on the workload of ``bench/e2e.py``, runs alternated on the same broker and the same
PostgreSQL server.

    python -m bench peer_debezium [-- --runs 3]      (or python -m bench.peer_debezium --runs 3)
    options: --changes 100000 --runs 3 --rate 1000 --seconds 20 --warmup 20000

Set-up (once, untimed): the private PostgreSQL cluster with ``wal_level = logical`` (``cdx.infra.postgres``
restarts an older one once), the peer's jars from Maven Central (``bench/peer/pom.xml``, first time only),
and two independent pipelines, each with its own HQ, channel and floor databases on that server:

- **cdx**: ``cdx capture``, ``cdx route`` and ``cdx sink`` processes (product defaults), HQ change tracking,
  one PostgreSQL channel, 3 partitions per topic (exactly ``bench.e2e --channels 1 --channel-dialect
  postgresql``).
- **peer**: one Connect standalone worker (heap 1 GiB, JsonConverter with schemas) running Debezium's
  PostgreSQL source (pgoutput, its own slot and publication, ``max.batch.size`` 4,096,
  ``max.queue.size`` 16,384, precise decimals, topics of 3 partitions created by Connect) and Debezium's
  JDBC sink (upsert by record key, deletes enabled, ``schema.evolution=basic``, batches of 4,096) into
  one PostgreSQL channel database.

Both pipelines stay up for the whole benchmark; each gets an untimed warm-up of ``--warmup`` changes (the
JVM's JIT, Python's caches). Each run (``--runs``) measures both, cdx first in even runs and the peer
first in odd ones, with ``bench.e2e``'s phases: **throughput** (``--changes`` HQ changes, 60 % inserts
then 40 % updates in HQ transactions of 5,000, the updates once the inserts are published, timed until the
channel holds the final state) and **steady load** (``--rate`` changes/s for ``--seconds``, probe rows,
latency HQ commit -> visible in the channel). CPU-seconds per 100,000 changes from /proc: cdx's three
processes (and each of them), the peer's JVM; the idle pipeline's CPU during the other's phase is reported
too, and so is the load average (the machine may be shared). cdx's steady latency is also split by stage
(``bench.stages``: capture, router, sink, from the probes' Kafka timestamps). Every figure is the median
over the runs; JSON in ``bench/results/peer_debezium-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import cpu, stages
from bench.common import RESULTS, Result, console, save, show
from bench.e2e import PROBE, PRODUCT, TOPOLOGY, Bench, Db, HqWriter, Pipeline, create_hq, fmt, free_port, median
from bench.peer import connect
from cdx.kafka.admin import TopicSpec, ensure_topics

SIDES = ("cdx", "peer")


class PeerPipeline:
    """The Connect worker seen through ``bench.e2e.Bench``'s pipeline interface."""

    def __init__(self, peer: connect.Peer) -> None:
        from confluent_kafka import Consumer

        self.peer = peer
        self.consumer = Consumer({"bootstrap.servers": peer.bootstrap, "group.id": f"{peer.prefix}-watch",
                                  "enable.auto.commit": False, "log_level": 0})

    def published(self, topic: str) -> float:
        """Records in ``topic`` (sum of its partitions' high watermarks; 0 before it exists)."""
        from confluent_kafka import KafkaException, TopicPartition

        md = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return 0.0
        try:
            return float(sum(self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                             for p in md.partitions))
        except KafkaException:
            return 0.0

    def captured(self) -> float:
        """PRODUCT changes the source has published (its topic's records)."""
        return self.published(f"{self.peer.prefix}.dbo.PRODUCT")

    def counters(self) -> dict[str, float]:
        return {"peer_published": sum(self.published(t) for t in self.peer.topics)}

    def pids(self) -> dict[str, int]:
        pid = self.peer.pid()
        return {"connect": pid} if pid is not None else {}

    def check(self) -> None:
        why = self.peer.failed()
        if why:
            raise SystemExit(f"peer: {why}\n" + self.tails())

    def tails(self, lines: int = 30) -> str:
        try:
            tail = self.peer.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            tail = []
        return f"--- Kafka Connect, {self.peer.log}:\n" + "\n".join(tail)

    def stop(self) -> None:
        self.consumer.close()
        self.peer.stop()


# ----------------------------------------------------------------------------------------------- set-up
def make_db(admin: str, name: str) -> Db:
    from cdx.infra.postgres import launcher as pg

    drop_slots(admin, name)
    return Db(name, "postgresql", pg.create_database(admin, name))


def drop_slots(admin: str, dbname: str) -> None:
    """Inactive replication slots a killed earlier run left in ``dbname`` (they would block DROP DATABASE)."""
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        for (slot,) in conn.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s AND NOT active",
                                    (dbname,)).fetchall():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def make_floor(admin: str, name: str) -> Db:
    floor = make_db(admin, name)
    conn, d = floor.open(), floor.dialect
    with d.transaction(conn):
        d.ensure_schema(conn, "bench")
        d.create_table(conn, "bench", "PROBE", PROBE, ["SEQ"])
    conn.close()
    return floor


def cdx_side(args: argparse.Namespace, admin: str, bootstrap: str, tmp: Path) -> Bench:
    hq, channel = make_db(admin, "bench_peer_cdx_hq"), make_db(admin, "bench_peer_cdx_c1")
    create_hq(hq)
    prefix = f"peercdx{os.getpid()}x{int(time.time()) % 100000}"
    path = tmp / "topology.yaml"
    path.write_text(TOPOLOGY.format(
        bootstrap=bootstrap, prefix=prefix, hq_dialect="postgresql", hq_dsn=hq.dsn, entity="usrt",
        channels=f'      - {{id: c1, database: {{dialect: postgresql, dsn: "{channel.dsn}"}}}}'))
    pipeline = Pipeline(path, tmp, args.poll_interval)
    return Bench(args, HqWriter(hq), [channel], make_floor(admin, "bench_peer_cdx_floor"), pipeline, topology=path)


def peer_side(args: argparse.Namespace, admin: str, bootstrap: str, tmp: Path) -> Bench:
    hq, channel = make_db(admin, "bench_peer_dbz_hq"), make_db(admin, "bench_peer_dbz_c1")
    conn, d = hq.open(), hq.dialect
    with d.transaction(conn):  # no cdx change tracking: the peer reads the WAL
        d.ensure_schema(conn, "dbo")
        d.create_table(conn, "dbo", "PRODUCT", PRODUCT, ["ID"])
        d.create_table(conn, "dbo", "PROBE", PROBE, ["SEQ"])
    conn.close()
    peer = connect.Peer(tmp / "connect", bootstrap, connect.PgTarget.from_dsn(hq.dsn),
                        connect.PgTarget.from_dsn(channel.dsn), ("dbo.PRODUCT", "dbo.PROBE"),
                        f"peerdbz{os.getpid()}x{int(time.time()) % 100000}", free_port())
    # created up front (as Connect would, 3 partitions) so the sink subscribes at once
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(t, partitions=3) for t in peer.topics])
    peer.start(connect.ensure_jars())
    pipeline = PeerPipeline(peer)
    try:
        peer.wait_running()
    except connect.PeerError as exc:
        pipeline.stop()
        raise SystemExit(f"{exc}\n" + pipeline.tails()) from None
    bench = Bench(args, HqWriter(hq), [channel], make_floor(admin, "bench_peer_dbz_floor"), pipeline,
                  schema="public")
    return bench


# ----------------------------------------------------------------------------------------------- runs
def warm_up(bench: Bench, changes: int) -> None:
    """An untimed throughput run of ``changes`` on a range of its own."""
    if changes <= 0:
        return
    real = bench.args
    bench.args = argparse.Namespace(**{**vars(real), "changes": changes})
    try:
        bench.throughput(49)
    finally:
        bench.args = real


def measured(bench: Bench, idle: Bench, phase: str, run: int) -> dict[str, Any]:
    """One phase of ``bench`` with the idle pipeline's CPU over the same time."""
    before = cpu.sample(idle.pipeline.pids())
    out = bench.throughput(run) if phase == "throughput" else bench.steady(run)
    out["idle_other_cpu_s"] = cpu.spent(before, cpu.sample(idle.pipeline.pids()))
    return out


def run_all(args: argparse.Namespace, benches: dict[str, Bench]) -> list[dict[str, Any]]:
    """Ready, warm up, then ``args.runs`` alternated runs; each finished run is also written at once to
    ``bench/results/peer_debezium-partial-*.json`` (a long benchmark stopped early keeps its runs)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"peer_debezium-partial-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for side in SIDES:
        console.print(f"{side}: first row in the channel after {benches[side].ready():.1f}s")
    for side in SIDES:
        t = time.perf_counter()
        warm_up(benches[side], args.warmup)
        console.print(f"{side}: warm-up of {args.warmup:,} changes done in {time.perf_counter() - t:.1f}s")
    runs = []
    for run in range(args.runs):
        order = SIDES if run % 2 == 0 else SIDES[::-1]
        result: dict[str, Any] = {"order": list(order)}
        for side in order:
            other = benches[SIDES[1 - SIDES.index(side)]]
            tp = measured(benches[side], other, "throughput", run)
            st = measured(benches[side], other, "steady", run)
            roles = ", ".join(f"{name} {s * 100_000 / tp['changes']:,.1f}" for name, s in tp["cpu_s"].items())
            console.print(f"run {run + 1} {side}: {tp['changes_per_s']:,.0f} changes/s ({tp['seconds']:.1f}s), "
                          f"CPU {tp['cpu_s_per_100k']:,.1f} s per 100k ({roles}); steady {st['achieved_rate']:,.0f}/s: "
                          f"{fmt(st['latency'])}; load average {tp['loadavg'][0]:.1f} / {st['loadavg'][0]:.1f}")
            if st.get("stages"):
                console.print(f"run {run + 1} {side}: where the steady latency goes: {stages.line(st['stages'])}")
            result[side] = {"throughput": tp, "steady": st}
        runs.append(result)
        partial.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2, default=str))
        console.print(f"run {run + 1} of {args.runs} done; runs so far in {partial}")
    return runs


# ----------------------------------------------------------------------------------------------- report
def side_figures(runs: list[dict[str, Any]], side: str) -> dict[str, float]:
    tps = [r[side]["throughput"] for r in runs]
    sts = [r[side]["steady"] for r in runs]
    out = {"changes_per_s": median([t["changes_per_s"] for t in tps]),
           "seconds": median([t["seconds"] for t in tps]),
           "cpu_s_per_100k": median([t["cpu_s_per_100k"] for t in tps]),
           "steady_cpu_s_per_100k": median([s["cpu_s_per_100k"] for s in sts])}
    for k in ("p50", "p95", "p99", "max"):
        out[k] = median([s["latency"].get(k, 0.0) for s in sts])
    out["missing"] = sum(s["latency"]["missing"] for s in sts)
    for role in tps[0]["cpu_s"] if tps else ():
        out[f"cpu_{role}_per_100k"] = median([t["cpu_s"].get(role, 0.0) * 100_000 / t["changes"] for t in tps])
    for stage in stages.STAGES:
        for k in ("p50", "p99"):
            found = [s["stages"][stage][k] for s in sts if k in s.get("stages", {}).get(stage, {})]
            if found:
                out[f"stage_{stage}_{k}"] = median(found)
    out["loadavg_min"] = min((t["loadavg"][0] for t in [*tps, *sts]), default=0.0)
    out["loadavg_max"] = max((t["loadavg"][0] for t in [*tps, *sts]), default=0.0)
    return out


def report(args: argparse.Namespace, runs: list[dict[str, Any]]) -> list[Result]:
    n, r = args.changes, len(runs)
    c, p = side_figures(runs, "cdx"), side_figures(runs, "peer")
    peer_name = "Debezium source + JDBC sink"
    results = [Result("peer_debezium", f"throughput: HQ changes/s until the channel is current, {n:,} changes",
                      "/s", c["changes_per_s"], p["changes_per_s"], peer_name, r, {"runs": runs})]
    for k in ("p50", "p95", "p99", "max"):
        results.append(Result("peer_debezium", f"steady {args.rate:,.0f} changes/s for {args.seconds:g}s: latency {k}",
                              "ms", c[k], p[k], peer_name, r))
    results.append(Result("peer_debezium", "CPU-seconds per 100,000 changes (throughput; cdx: capture + router + "
                          "sink, peer: Connect JVM)", "s", c["cpu_s_per_100k"], p["cpu_s_per_100k"], peer_name, r))
    results.append(Result("peer_debezium", "CPU-seconds per 100,000 changes (steady load)", "s",
                          c["steady_cpu_s_per_100k"], p["steady_cpu_s_per_100k"], peer_name, r,
                          {"cdx": c, "peer": p}))
    show(results, "cdx vs Debezium (PostgreSQL source + JDBC sink on Kafka Connect), same broker and server")
    ratio = c["changes_per_s"] / p["changes_per_s"] if p["changes_per_s"] else 0.0
    console.print(f"throughput: cdx {c['changes_per_s']:,.0f} changes/s, peer {p['changes_per_s']:,.0f} changes/s:"
                  f" ratio cdx/peer {ratio:.2f} (target >= 1.5; medians of {r})")
    for side, f in (("cdx", c), ("peer", p)):
        console.print(f"{side}: steady {args.rate:,.0f}/s p50 {f['p50']:,.0f} / p95 {f['p95']:,.0f} / p99 "
                      f"{f['p99']:,.0f} / max {f['max']:,.0f} ms ({f['missing']:,.0f} probes missing); CPU "
                      f"{f['cpu_s_per_100k']:,.1f} s per 100k changes (throughput), "
                      f"{f['steady_cpu_s_per_100k']:,.1f} s (steady)")
        roles = ", ".join(f"{k[4:-9]} {v:,.1f} s" for k, v in f.items()
                          if k.startswith("cpu_") and k != "cpu_s_per_100k")
        where = ", ".join(f"{stage} p50 {f[f'stage_{stage}_p50']:,.0f} / p99 {f[f'stage_{stage}_p99']:,.0f} ms"
                          for stage in stages.STAGES if f"stage_{stage}_p50" in f)
        console.print(f"{side}: CPU per 100k changes by process: {roles}" + (f"; steady latency by stage: {where}"
                                                                            if where else "")
                      + f"; load average {f['loadavg_min']:.1f}-{f['loadavg_max']:.1f}")
    path = save(results, "peer_debezium")
    console.print(f"saved {path}")
    return results


def main(argv: list[str] | None = None) -> list[Result]:
    from cdx.infra.kafka import launcher
    from cdx.infra.postgres import launcher as pg

    parser = argparse.ArgumentParser(prog="python -m bench.peer_debezium")
    parser.add_argument("--changes", type=int, default=100_000, help="HQ row changes per throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0, help="HQ changes/s of the steady load")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the steady load")
    parser.add_argument("--batch", type=int, default=5000, help="HQ changes per transaction (throughput run)")
    parser.add_argument("--warmup", type=int, default=20_000, help="untimed changes per pipeline before the runs")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="cdx capture --poll-interval")
    args, _ = parser.parse_known_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the processes
    started = time.perf_counter()
    try:
        bootstrap, admin = launcher.up(1), pg.up(logical=True)
        connect.ensure_jars()
    except (launcher.KafkaLauncherError, pg.PostgresError, connect.PeerError) as exc:
        raise SystemExit(f"peer_debezium: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-peer-"))
    console.print(f"peer_debezium: logs and configuration in {tmp}")
    benches: dict[str, Bench] = {}
    try:
        benches["peer"] = peer_side(args, admin, bootstrap, tmp)
        peer = benches["peer"].pipeline.peer  # type: ignore[attr-defined]
        benches["cdx"] = cdx_side(args, admin, bootstrap, tmp)
        runs = run_all(args, benches)
    except BaseException:
        for b in benches.values():
            console.print(b.pipeline.tails())
        raise
    finally:
        for b in benches.values():
            b.pipeline.stop()
        if "peer" in benches:
            connect.drop_slot(admin, peer.slot, benches["peer"].hq.db.dsn, peer.publication)
    results = report(args, runs)
    console.print(f"total {time.perf_counter() - started:.0f}s")
    return results


if __name__ == "__main__":
    main()
