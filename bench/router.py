"""Router throughput and latency, beside a plain confluent-kafka copy of the same records.

    python -m bench.router [--changes 40000] [--rate 1000] [--seconds 5] [--runs 3] [--engine transactional]

1. Writes ``--changes`` HQ changes (four tables, as capture does: Avro, transactions, a
   tombstone after each delete) to fresh per-table topics.
2. **Throughput**: starts ``cdx route --engine E`` (default transactional) on that backlog and the baseline (a
   confluent-kafka consume -> produce copy of every source record to one topic, idempotent
   producer, offsets committed after each flush). Rate = records / (last - first output
   CreateTime), so process start-up and group join are not counted.
3. **Latency**: with both running and idle, writes ``--rate`` changes/s for ``--seconds``
   (a transaction every 10 ms) and reports output CreateTime - source CreateTime percentiles.

Also records in per CPU-second (user + system, every thread, from /proc for the router process from
its first routed record on; the bench process's CPU while the baseline copies): a figure that
survives a noisy machine. Medians of ``--runs`` runs (fresh topics each); prints one table and
writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import Result, save, show
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, consumer_config, producer_config
from cdx.kafka.reading import high_watermarks, read_to_end
from cdx.routed import parse_value
from cdx.topology import Topology
from tests.routing.helpers import TABLES, HqWriter, Workload, _codec, spawn_router, write_topology


def source_topics(topo: Topology) -> list[str]:
    return [f"{topo.kafka.topic_prefix}.hq.dbo.{t}" for t in TABLES]


def total(cfg: dict[str, Any], topics: list[str]) -> int:
    return sum(sum(high_watermarks(cfg, t).values()) for t in topics)


def source_timestamps(cfg: dict[str, Any], topics: list[str]) -> dict[tuple[str, int, int], int]:
    return {(t, m.partition() or 0, m.offset() or 0): m.timestamp()[1] for t in topics for m in read_to_end(cfg, t)}


def wait_count(cfg: dict[str, Any], topics: list[str], want: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while total(cfg, topics) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topics}: fewer than {want} records after {timeout}s")
        time.sleep(0.25)


class Baseline(threading.Thread):
    """consume -> produce copy with at-least-once commits, the floor any router is measured against."""

    def __init__(self, cfg: dict[str, Any], sources: list[str], out: str, group: str) -> None:
        super().__init__(daemon=True)
        self.cfg, self.sources, self.out, self.group = cfg, sources, out, group
        self.stop = threading.Event()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.cfg, self.group))
        producer = Producer(producer_config(self.cfg))
        consumer.subscribe(self.sources)
        try:
            while not self.stop.is_set():
                msgs = consumer.consume(1000, 0.1)
                ends: dict[tuple[str, int], int] = {}
                for m in msgs:
                    if m.error() is not None:
                        continue
                    ends[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
                    hdr: list[tuple[str, str | bytes | None]] = [
                        ("src", f"{m.topic()}:{m.partition()}:{m.offset()}".encode())]
                    while True:
                        try:
                            producer.produce(self.out, key=m.key(), value=m.value(), headers=hdr)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    producer.poll(0)
                if ends:
                    producer.flush()
                    consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()],
                                    asynchronous=False)
        finally:
            producer.flush()
            consumer.close()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_values(cfg: dict[str, Any], topics: list[str], want: int, timeout: float = 600.0) -> None:
    """Until ``topics`` hold ``want`` non-tombstone records (read_committed)."""
    deadline = time.monotonic() + timeout
    wait_count(cfg, topics, want, timeout)
    while sum(1 for t in topics for m in read_to_end(cfg, t) if m.value() is not None) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topics}: fewer than {want} records after {timeout}s")
        time.sleep(1.0)


def output_times(cfg: dict[str, Any], topics: list[str]) -> list[Any]:
    return [m for t in topics for m in read_to_end(cfg, t)]


def rate(msgs: list[Any], n_in: int) -> tuple[float, float]:
    ts = [m.timestamp()[1] for m in msgs]
    span = max(1, max(ts) - min(ts)) / 1000
    return n_in / span, len(msgs) / span


def latencies(outs: list[Any], src_ts: dict[tuple[str, int, int], int], position: Any) -> list[float]:
    lat = []
    for m in outs:
        pos = position(m)
        if pos is not None and pos in src_ts:
            lat.append(m.timestamp()[1] - src_ts[pos])
    return lat


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(prog="python -m bench.router")
    ap.add_argument("--bootstrap", default=None, help="Kafka (default: the local broker, started if needed)")
    ap.add_argument("--changes", type=int, default=40_000)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--engine", default="transactional", choices=["transactional", "faust"])
    args, _others = ap.parse_known_args(argv)  # ``python -m bench`` passes every benchmark the same options
    if args.bootstrap is None:
        from cdx.infra.kafka import launcher

        args.bootstrap = launcher.up(1)
    runs = [run_once(args, i + 1) for i in range(args.runs)]
    med = {name: {m: statistics.median(r[name][m] for r in runs) for m in runs[0][name]}
           for name in ("router", "baseline")}
    print(f"\nrouter benchmark: {runs[0]['source_records']:,} source records ({args.changes:,} changes,"
          f" {len(TABLES)} tables -> {runs[0]['group_records']:,} group records); latency at {args.rate:g}"
          f" changes/s for {args.seconds:g}s; medians of {args.runs} run(s)")
    print(f"{'':28} {'in rec/s':>10} {'out rec/s':>10} {'in/CPU-s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
          f" {'max ms':>8}")
    for name, label in (("router", f"router ({args.engine})"), ("baseline", "baseline (confluent copy)")):
        m = med[name]
        print(f"{label:28} {m['in_per_s']:10,.0f} {m['out_per_s']:10,.0f} {m['in_per_cpu_s']:10,.0f}"
              f" {m['p50_ms']:8.1f} {m['p95_ms']:8.1f}"
              f" {m['p99_ms']:8.1f} {m['max_ms']:8.1f}")
    r, b = med["router"], med["baseline"]
    results = [Result("router", "records in", "rec/s", r["in_per_s"], b["in_per_s"], "confluent copy", args.runs,
                      {"runs": runs, "engine": args.engine}),
               Result("router", "records out", "rec/s", r["out_per_s"], b["out_per_s"], "confluent copy", args.runs),
               Result("router", "records in per CPU-second", "rec/CPU-s", r["in_per_cpu_s"], b["in_per_cpu_s"],
                      "confluent copy", args.runs)]
    results += [Result("router", f"latency {q} at {args.rate:g}/s", "ms", r[f"{q}_ms"], b[f"{q}_ms"],
                       "confluent copy", args.runs) for q in ("p50", "p95", "p99")]
    show(results, "router: records/s and latency (source CreateTime -> routed CreateTime)")
    save(results, "router")
    return results


def steady_latency(args: argparse.Namespace, cfg: dict[str, Any], writer: HqWriter, wl: Workload, srcs: list[str],
                   groups: list[str], copy_topic: str) -> tuple[list[float], list[float]]:
    """With router and copy idle: ``--rate`` changes/s for ``--seconds``; latencies of both (ms)."""
    codec = _codec(writer.topology)
    before_src = {t: high_watermarks(cfg, t) for t in srcs}
    before_grp = {t: high_watermarks(cfg, t) for t in groups}
    before_copy = high_watermarks(cfg, copy_topic)
    per_txn = max(1, round(args.rate / 100))
    t_end = time.monotonic() + args.seconds
    nxt = time.monotonic()
    while time.monotonic() < t_end:
        writer.write(wl.changes(per_txn))
        nxt += 0.01
        time.sleep(max(0.0, nxt - time.monotonic()))
    time.sleep(3.0)
    src_ts = {k: v for k, v in source_timestamps(cfg, srcs).items() if k[2] >= before_src[k[0]].get(k[1], 0)}
    outs = [m for t in groups for m in read_to_end(cfg, t, start=before_grp[t]) if m.value() is not None]

    def routed_pos(m: Any) -> Any:
        v = parse_value({}, codec.decode_value(m.topic(), m.value()) or {})
        return (v.position.topic, v.position.partition, v.position.offset)

    r_lat = latencies(outs, src_ts, routed_pos)
    copies = list(read_to_end(cfg, copy_topic, start=before_copy))

    def copy_pos(m: Any) -> Any:
        src = dict(m.headers() or []).get("src")
        if src is None:
            return None
        t, p, o = src.decode().rsplit(":", 2)
        return (t, int(p), int(o))

    b_lat = latencies(copies, src_ts, copy_pos)
    return r_lat, b_lat


def run_once(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """One run on fresh topics: backlog throughput, then steady-load latency; router and baseline."""
    tmp = Path(tempfile.mkdtemp(prefix="cdx-bench-router-"))
    path, topo = write_topology(tmp, args.bootstrap, notes=True)
    cfg = client_config(args.bootstrap)
    srcs = source_topics(topo)
    groups = [topo.group_topic(g.id) for g in topo.channel_data_groups]
    copy_topic = f"{topo.kafka.topic_prefix}.bench.copy"
    ensure_topics(cfg, [TopicSpec(copy_topic, topo.kafka.default_partitions, 1, {})])
    writer = HqWriter(topo)
    wl = Workload(7)
    print(f"writing {args.changes:,} changes to {len(srcs)} table topics...", file=sys.stderr)
    for i in range(0, args.changes, 2000):
        writer.write(wl.changes(min(2000, args.changes - i)))
    n_in = total(cfg, srcs)  # records incl. tombstones (+ transaction markers, counted by offsets)
    n_in_records = sum(1 for t in srcs for _ in read_to_end(cfg, t))

    # -- router ---------------------------------------------------------------------------
    from tests.routing.helpers import expected

    want = sum(len(v) for v in expected(topo, engine=args.engine).values())  # routed value records
    print(f"router: {n_in_records:,} source records -> {want:,} group value records", file=sys.stderr)
    proc = spawn_router(path, tmp, engine=args.engine)
    baseline: Baseline | None = None
    try:
        while total(cfg, groups) == 0:  # CPU from the first routed record on (start-up not counted)
            time.sleep(0.05)
        r_cpu0 = proc_cpu(proc.pid)
        wait_values(cfg, groups, want)
        r_cpu = proc_cpu(proc.pid) - r_cpu0
        r_in, r_out = rate(output_times(cfg, groups), n_in_records)
        print(f"router: {r_in:,.0f} in/s, {r_out:,.0f} out/s", file=sys.stderr)
        # -- baseline --------------------------------------------------------------------
        baseline = Baseline(cfg, srcs, copy_topic, f"{topo.kafka.topic_prefix}-bench-copy")
        b_cpu0 = time.process_time()
        baseline.start()
        wait_count(cfg, [copy_topic], n_in_records)
        b_cpu = time.process_time() - b_cpu0
        b_in, b_out = rate(output_times(cfg, [copy_topic]), n_in_records)
        r_lat, b_lat = steady_latency(args, cfg, writer, wl, srcs, groups, copy_topic)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
        if baseline is not None:
            baseline.stop.set()
            baseline.join(30)

    result: dict[str, Any] = {"source_records": n_in_records, "offsets": n_in, "group_records": want}
    for name, a, b, lat, cpu in (("router", r_in, r_out, r_lat, r_cpu), ("baseline", b_in, b_out, b_lat, b_cpu)):
        result[name] = {"in_per_s": a, "out_per_s": b, "in_per_cpu_s": n_in_records / max(cpu, 1e-3),
                        "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95),
                        "p99_ms": pct(lat, 0.99), "max_ms": max(lat) if lat else float("nan"),
                        "latency_samples": len(lat)}
    print(f"run {run}: router {r_in:,.0f} in/s {r_out:,.0f} out/s p99 {result['router']['p99_ms']:.0f} ms;"
          f" baseline {b_in:,.0f}/s", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
