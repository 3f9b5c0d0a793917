"""Router test helpers: a three-table topology, an HQ-like writer of table topics, group-topic reading."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from cdx.codec import (
    Column,
    DecodeError,
    LogicalType,
    SchemaPublisher,
    SchemaStore,
    SchemaStoreUnavailable,
    SingleObjectCodec,
    TableSchemas,
)
from cdx.codec.envelope import SourceInfo, change_records, make_envelope
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.reading import high_watermarks, read_range, read_to_end
from cdx.routed import RoutedChange, parse_tombstone, parse_value
from cdx.streams.routing import RoutingPlan, SourceRecord, hq_columns
from cdx.streams.stateful import route_stateful
from cdx.topics import schemas_topic, table_topic
from cdx.topology import Topology, load_topology

S = LogicalType.STRING
TABLES: dict[str, tuple[Column, ...]] = {
    "ITEMS": (Column("DATAAREAID", S, primary_key=True, length=4), Column("ITEMID", S, primary_key=True, length=20),
              Column("NAME", S, length=60), Column("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
              Column("QTY", LogicalType.INT64), Column("HQONLY", S)),
    "PRODUCTS": (Column("RECID", LogicalType.INT64, primary_key=True), Column("NAME", S), Column("SECRET", S)),
    "STAFF": (Column("STAFFID", S, primary_key=True), Column("DATAAREAID", S, length=4), Column("NAME", S)),
    "NOTES": (Column("ID", LogicalType.INT64, primary_key=True), Column("TXT", S)),  # routed only with notes=True
}
ENTITIES = ["usrt", "dert", "frrt"]  # frrt: no group has it

BASE = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 3}}
hq: {{name: hq, dialect: sqlite, dsn: "sqlite:///{tmp}/hq.db"}}
jobs:
  - {{id: J1, direction: download}}
  - {{id: J2, direction: download}}
subjobs:
  - id: Items
    hq_table: dbo.ITEMS
    fields: [ITEMID, {{name: NAME, to_name: ITEMNAME}}, PRICE, QTY]
    scheduled_by: [J1]
  - id: Products
    hq_table: dbo.PRODUCTS
    channel_table: ax.ECORESPRODUCT
    fields: [RECID, {{name: NAME, to_name: SEARCHNAME}}]
    scheduled_by: [J1]
  - {{id: Staff, hq_table: dbo.STAFF, fields: [STAFFID, NAME], scheduled_by: [J2]}}
{notes}channel_data_groups:
  - {{id: us, legal_entities: [usrt]}}
  - {{id: de, legal_entities: [dert]}}
  - {{id: both, legal_entities: [usrt, dert]}}
{extra_groups}
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [us, de{extra_s1}]}}
  - {{id: S2, direction: download, jobs: [J2], channel_data_groups: [us, both]}}
"""


def topology_text(bootstrap: str, prefix: str, tmp: Path, *, extra_group: str | None = None,
                  notes: bool = False) -> str:
    """The test topology; ``extra_group`` adds a group (dert, frrt) to S1; ``notes`` a subjob on NOTES (J2)."""
    extra = f"  - {{id: {extra_group}, legal_entities: [dert, frrt]}}" if extra_group else ""
    sub = "  - {id: Notes, hq_table: dbo.NOTES, fields: [ID, TXT], scheduled_by: [J2]}\n" if notes else ""
    return BASE.format(bootstrap=bootstrap, prefix=prefix, tmp=tmp, extra_groups=extra,
                       extra_s1=f", {extra_group}" if extra_group else "", notes=sub)


def write_topology(tmp: Path, bootstrap: str, prefix: str | None = None, **kw: Any) -> tuple[Path, Topology]:
    prefix = prefix or f"rt{uuid.uuid4().hex[:8]}"
    path = tmp / "topology.yaml"
    path.write_text(topology_text(bootstrap, prefix, tmp, **kw))
    return path, load_topology(path)


@dataclass
class Change:
    table: str
    op: str
    key: dict[str, Any]
    row: dict[str, Any] | None


class Workload:
    """Random inserts/updates/deletes over the three tables (a live key set per table)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.live: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {t: {} for t in TABLES}
        self.n = 0

    def _row(self, table: str, key: dict[str, Any]) -> dict[str, Any]:
        r, self.n = self.rng, self.n + 1
        if table == "ITEMS":
            return {**key, "NAME": f"item {self.n}", "PRICE": Decimal(r.randint(0, 99999)) / 100,
                    "QTY": r.randint(0, 10**9), "HQONLY": "x"}
        if table == "PRODUCTS":
            return {**key, "NAME": f"product {self.n}", "SECRET": "s"}
        if table == "NOTES":
            return {**key, "TXT": f"note {self.n}"}
        return {**key, "DATAAREAID": r.choice(ENTITIES), "NAME": f"staff {self.n}"}

    def _new_key(self, table: str) -> dict[str, Any]:
        r = self.rng
        if table == "ITEMS":
            return {"DATAAREAID": r.choice(ENTITIES), "ITEMID": f"I{r.randrange(10**6):06d}"}
        if table in ("PRODUCTS", "NOTES"):
            return {"ID" if table == "NOTES" else "RECID": r.randrange(10**9)}
        return {"STAFFID": f"S{r.randrange(10**6):06d}"}

    def next(self) -> Change:
        table = self.rng.choice(list(TABLES))
        live = self.live[table]
        x = self.rng.random()
        if x < 0.5 or len(live) < 5:
            key = self._new_key(table)
            row = self._row(table, key)
            live[tuple(key.values())] = row
            return Change(table, "c", key, row)
        k = self.rng.choice(list(live))
        key = {c.name: v for c, v in zip([c for c in TABLES[table] if c.primary_key], k, strict=True)}
        if x < 0.85:
            row = self._row(table, key)
            if table == "STAFF":
                row["DATAAREAID"] = live[k]["DATAAREAID"]
            live[k] = row
            return Change(table, "u", key, row)
        del live[k]
        return Change(table, "d", key, None)

    def changes(self, n: int) -> list[Change]:
        return [self.next() for _ in range(n)]


class HqWriter:
    """Writes changes to the table topics as capture does: Avro single-object, transactions."""

    def __init__(self, topology: Topology) -> None:
        k = topology.kafka
        self.topology = topology
        self.config = client_config(k.bootstrap_servers)
        ensure_topics(self.config, [TopicSpec(self.topic(t), k.default_partitions, 1, COMPACTED) for t in TABLES]
                      + [TopicSpec(schemas_topic(k.topic_prefix), 1, 1, COMPACTED)])
        self.producer = Producer(producer_config(self.config, transactional_id=f"test-hq-{uuid.uuid4().hex}"))
        self.producer.init_transactions(30)
        self.publisher = SchemaPublisher(self.producer, schemas_topic(k.topic_prefix))
        self.store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=self.config)
        self.codec = SingleObjectCodec(self.store, self.publisher)
        deadline = time.monotonic() + 30
        while True:  # the schemas topic may have just been created: its leader can still be moving
            try:
                self.schemas = {t: self.store.register_table(self.topic(t), cols) for t, cols in TABLES.items()}
                break
            except SchemaStoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.version = 0

    def topic(self, table: str) -> str:
        return table_topic(self.topology.kafka.topic_prefix, "hq", "dbo", table)

    def write(self, changes: Iterable[Change], *, abort: bool = False) -> None:
        self.producer.begin_transaction()
        for ch in changes:
            self.version += 1
            schemas: TableSchemas = self.schemas[ch.table]
            src = SourceInfo("cdx", "hq", "hq", "dbo", ch.table, self.version, int(time.time() * 1000))
            env = (make_envelope("d", before=ch.key, source=src, ts_ms=src.ts_ms) if ch.op == "d"
                   else make_envelope(ch.op, after=ch.row, source=src, ts_ms=src.ts_ms))
            topic = self.topic(ch.table)
            for key, value in change_records(ch.key, env):
                self.producer.produce(topic, key=self.codec.encode_key(topic, schemas.key, key),
                                      value=self.codec.encode_value(topic, schemas.value, value))
        if abort:
            self.producer.flush(30)  # written, then aborted
            self.producer.abort_transaction(30)
            self.publisher.transaction_aborted()
        else:
            self.producer.commit_transaction(30)
            self.publisher.transaction_committed()


def _codec(topology: Topology) -> SingleObjectCodec:
    k = topology.kafka
    return SingleObjectCodec(SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix)))


def read_written(cfg: dict[str, Any], topic: str) -> Iterable[Any]:
    """Every committed record of ``topic`` written so far, read_committed: up to the end offsets as written,
    not the last stable offset. ``commit_transaction`` returns before the broker has written the commit
    markers, so reading to the stable offset right after a commit can miss that transaction."""
    return read_range(cfg, topic, high_watermarks(cfg, topic, committed=False))


def expected(topology: Topology, tables: Iterable[str] = TABLES, engine: str = "transactional"
             ) -> dict[str, set[Any]]:
    """group id -> the routed records (``fingerprint``) the committed table records must give: the
    rules with per-key state (``cdx.streams.stateful``), each partition in offset order. A tombstone
    that stands alone (compaction removed the delete before it) counts as a delete. ``engine="faust"``:
    the stateless rules (a delete whose key lacks DATAAREAID goes to every group; tombstones alone nowhere)."""
    if engine == "faust":
        return expected_stateless(topology, tables)
    codec = _codec(topology)
    cfg = client_config(topology.kafka.bootstrap_servers)
    plan = RoutingPlan(topology)
    out: dict[str, set[Any]] = {g.id: set() for g in topology.channel_data_groups}
    for table in tables:
        topic = table_topic(topology.kafka.topic_prefix, "hq", "dbo", table)
        held: dict[bytes, Any] = {}
        columns: dict[bytes, Any] = {}
        for m in sorted(read_written(cfg, topic), key=lambda m: (m.partition(), m.offset())):
            key, value = m.key() or b"", m.value()
            try:
                ks = codec.writer_schema(topic, key, True)
                if value is None:
                    cols = columns.get(key[:10]) or hq_columns(ks, ks)
                else:
                    cols = columns[key[:10]] = hq_columns(codec.writer_schema(topic, value), ks)
                rec = SourceRecord(topic, m.partition() or 0, m.offset() or 0, codec.decode_key(topic, key),
                                   codec.decode_value(topic, value), cols)
            except DecodeError:
                continue  # dead-lettered by the router
            emits, held_now = route_stateful(plan, rec, held.get(key), plan.groups_of(topic))
            if held_now is None:
                held.pop(key, None)
            else:
                held[key] = held_now
            for e in emits:
                r = e.route
                if r.value is not None:
                    fp = fingerprint(parse_value(r.key, r.value))
                elif any(x.route.value is not None and x.route.schemas == r.schemas for x in emits):
                    continue  # the tombstone after a routed delete
                else:
                    fp = (rec.position, r.schemas.schema, r.schemas.table, "d", tuple(sorted(r.key.items())), None)
                for g in e.groups:
                    out[g].add(fp)
    return out


def expected_stateless(topology: Topology, tables: Iterable[str] = TABLES) -> dict[str, set[Any]]:
    """What the faust engine routes: ``RoutingPlan.route`` record by record, no key state."""
    codec = _codec(topology)
    cfg = client_config(topology.kafka.bootstrap_servers)
    plan = RoutingPlan(topology)
    out: dict[str, set[Any]] = {g.id: set() for g in topology.channel_data_groups}
    for table in tables:
        topic = table_topic(topology.kafka.topic_prefix, "hq", "dbo", table)
        for m in read_written(cfg, topic):
            if m.value() is None:
                continue
            key, value = m.key() or b"", m.value() or b""
            try:
                cols = hq_columns(codec.writer_schema(topic, value), codec.writer_schema(topic, key, True))
                rec = SourceRecord(topic, m.partition() or 0, m.offset() or 0, codec.decode_key(topic, key),
                                   codec.decode_value(topic, value), cols)
            except DecodeError:
                continue
            for r in plan.route(rec):
                if r.value is not None:
                    for g in r.groups:
                        out[g].add(fingerprint(parse_value(r.key, r.value)))
    return out


def fingerprint(c: RoutedChange) -> tuple[Any, ...]:
    row = tuple(sorted(c.row.items())) if c.row else None
    return (c.position, c.schema, c.table, c.op, tuple(sorted(c.key.items())), row)


@dataclass
class GroupTopic:
    changes: list[RoutedChange]
    partitions: list[int]
    tombstones: int
    deletes_followed_by_tombstone: bool

    def applied(self) -> list[RoutedChange]:
        """What a sink applies: per (group partition, source topic, source partition), only records
        whose source offset is above the watermark (see docs/routing.md)."""
        marks: dict[tuple[int, str, int], int] = {}
        out = []
        for p, c in zip(self.partitions, self.changes, strict=True):
            k = (p, c.position.topic, c.position.partition)
            if c.position.offset > marks.get(k, -1):
                marks[k] = c.position.offset
                out.append(c)
        return out


def read_group(topology: Topology, group: str) -> GroupTopic:
    """The group topic read_committed. A tombstone that names (headers) a delete already read in its
    partition is that delete's own; another one alone (its delete compacted away) counts as the
    delete. ``deletes_followed_by_tombstone``: every delete has its tombstone later in its partition
    (other keys' records may come between when several workers write one partition)."""
    codec = _codec(topology)
    topic = topology.group_topic(group)
    cfg = client_config(topology.kafka.bootstrap_servers)
    changes: list[RoutedChange] = []
    partitions: list[int] = []
    open_deletes: dict[tuple[int, Any], Any] = {}  # (partition, key) -> position of a delete awaiting its tombstone
    ok, tombstones = True, 0
    for m in read_to_end(cfg, topic):
        p = m.partition() or 0
        key = codec.decode_key(topic, m.key() or b"")
        k = (p, tuple(sorted(key.items())))
        if m.value() is None:
            tombstones += 1
            lone = parse_tombstone(key, m.headers())
            own = open_deletes.pop(k, None)
            if own is not None and (lone is None or lone.position == own):
                continue
            ok = ok and lone is not None  # a tombstone alone must say which delete it is
            if lone is not None:
                changes.append(lone)
                partitions.append(p)
            continue
        c = parse_value(key, codec.decode_value(topic, m.value()) or {})
        ok = ok and k not in open_deletes  # the key's next record after a delete is its tombstone
        if c.op == "d":
            open_deletes[k] = c.position
        changes.append(c)
        partitions.append(p)
    ok = ok and not open_deletes
    return GroupTopic(changes, partitions, tombstones, ok)


def wait_routed(topology: Topology, want: dict[str, set[Any]], timeout: float = 60.0) -> dict[str, GroupTopic]:
    """Read the group topics until each holds at least ``want`` (returns the last read)."""
    deadline = time.monotonic() + timeout
    cfg = client_config(topology.kafka.bootstrap_servers)
    while True:  # cheap: wait until the end offsets can hold what is wanted
        try:
            if all(sum(high_watermarks(cfg, topology.group_topic(g)).values()) >= len(want[g]) for g in want):
                break
        except KafkaException:
            pass  # a group topic the router has just created
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    while True:
        got = {g: read_group(topology, g) for g in want}
        if all(want[g] <= {fingerprint(c) for c in got[g].changes} for g in want):
            return got
        if time.monotonic() > deadline:
            missing = {g: len(want[g] - {fingerprint(c) for c in got[g].changes}) for g in want}
            raise AssertionError(f"not routed within {timeout}s; missing per group: {missing}")
        time.sleep(0.5)


ENGINES = ["transactional", "faust"]


def spawn_router(path: Path, tmp: Path, name: str = "router", *extra: str, engine: str | None = None
                 ) -> subprocess.Popen:
    """``cdx route`` in a subprocess; ``engine`` default: ``$CDX_TEST_ROUTER_ENGINE``, else transactional
    (set it to ``faust`` to see what the old engine does in the transactional engine's tests)."""
    engine = engine or os.environ.get("CDX_TEST_ROUTER_ENGINE", "transactional")
    datadir = tmp / f"{name}-data"
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "route", "--topology", str(path),
                             "--datadir", str(datadir), "--reload-interval", "0.3", "--engine", engine, *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    return proc.wait(timeout)
