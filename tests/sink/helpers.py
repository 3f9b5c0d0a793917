"""Test helpers for the channel sinks: topologies, a stand-in router producing routed records
(re-sends included), the expected channel state, and reading channel tables back."""

from __future__ import annotations

import json
import random
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from cdx.codec import Column, LogicalType, SchemaPublisher, SchemaStore, SingleObjectCodec, ensure_schemas_topic
from cdx.connectors.sink.state import StateStore
from cdx.dialects import connect, get_dialect
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.reading import high_watermarks
from cdx.routed import RoutedSchemas, SourcePosition, make_value, routed_schemas
from cdx.topics import group_topic, schemas_topic
from cdx.topology.loader import load_topology
from cdx.topology.root import Topology

C = LogicalType
PARENT = (
    Column("DATAAREAID", C.STRING, primary_key=True, length=4),
    Column("ID", C.INT64, primary_key=True),
    Column("NAME", C.STRING, length=40),
    Column("PRICE", C.DECIMAL, precision=18, scale=4),
    Column("VER", C.INT64),
    Column("TS", C.TIMESTAMP),
)
CHILD = (
    Column("ID", C.INT64, primary_key=True),
    Column("PARENTID", C.INT64),
    Column("TXT", C.STRING),
    Column("VER", C.INT64),
)
CHANCFG = (
    Column("RECID", C.INT64, primary_key=True),
    Column("STORE", C.INT64),
    Column("NAME", C.STRING),
    Column("VER", C.INT64),
)
SUBJOBS = [
    {"id": "Parent", "hq_table": "dbo.PARENT", "fields": ["ID", "NAME", "PRICE", "VER", "TS"],
     "scheduled_by": ["1040"]},
    {"id": "Child", "hq_table": "dbo.CHILD", "fields": ["ID", "PARENTID", "TXT", "VER"], "scheduled_by": ["1040"]},
    {"id": "ChanCfg", "hq_table": "dbo.CHANCFG", "fields": ["RECID", "STORE", "NAME", "VER"],
     "scheduled_by": ["1040"], "channel_filter": {"column": "STORE", "attribute": "recid"}},
]
TABLES = {"PARENT": PARENT, "CHILD": CHILD, "CHANCFG": CHANCFG}
SUBJOB_OF = {"PARENT": "Parent", "CHILD": "Child", "CHANCFG": "ChanCfg"}


@dataclass
class Db:
    id: str
    dialect: str
    dsn: str
    recid: int = 1
    registers: list[Db] = field(default_factory=list)


def sqlite_db(tmp: Path, name: str, recid: int = 1) -> Db:
    return Db(name, "sqlite", f"sqlite:///{tmp}/{name}.db", recid)


def pg_db(server: str, name: str, recid: int = 1) -> Db:
    from cdx.infra.postgres import launcher

    return Db(name, "postgresql", launcher.create_database(server, f"{name}_{uuid.uuid4().hex[:6]}"), recid)


def write_topology(tmp: Path, bootstrap: str, channels: Sequence[Db], *, subjobs: list[dict[str, Any]] | None = None,
                   partitions: int = 3, prefix: str | None = None) -> tuple[Path, Topology]:
    """A one-group topology (group ``g1``) over ``channels``; JSON is valid YAML."""
    prefix = prefix or f"snk{uuid.uuid4().hex[:8]}"
    chans = [{"id": c.id, "database": {"dialect": c.dialect, "dsn": c.dsn}, "attributes": {"recid": c.recid},
              "offline_registers": [{"id": r.id, "database": {"dialect": r.dialect, "dsn": r.dsn}}
                                    for r in c.registers]} for c in channels]
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix, "default_partitions": partitions},
        "hq": {"name": "hq", "dialect": "sqlite", "dsn": f"sqlite:///{tmp}/hq.db"},
        "jobs": [{"id": "1040", "direction": "download"}],
        "subjobs": subjobs if subjobs is not None else SUBJOBS,
        "channel_data_groups": [{"id": "g1", "legal_entities": ["usrt"], "channels": chans}],
        "distribution_schedules": [{"id": "S1", "direction": "download", "jobs": ["1040"],
                                    "channel_data_groups": ["g1"]}],
    }
    path = tmp / "topology.yaml"
    path.write_text(json.dumps(data, indent=1))
    return path, load_topology(path)


@dataclass
class Sent:
    """One routed change as produced (kept to re-send it and to compute the expected state)."""

    table: str
    op: str
    key: dict[str, Any]
    row: dict[str, Any] | None
    position: SourcePosition
    kb: bytes
    vb: bytes


class FakeRouter:
    """Produces routed records to ``<prefix>.group.g1`` the way the router does (murmur2 by key,
    a tombstone after each delete), with source positions per fake HQ topic partition."""

    def __init__(self, topology: Topology, group: str = "g1", partitions: int = 3) -> None:
        k = topology.kafka
        self.prefix = k.topic_prefix
        self.topic = group_topic(self.prefix, group)
        self.config = client_config(k.bootstrap_servers)
        ensure_topics(self.config, [TopicSpec(self.topic, partitions)])
        ensure_schemas_topic(k.bootstrap_servers, schemas_topic(self.prefix))
        self.producer = Producer(producer_config(self.config))
        self.codec = SingleObjectCodec(SchemaStore(), SchemaPublisher(self.producer, schemas_topic(self.prefix),
                                                                      transactional=False))
        self.sent: list[Sent] = []
        self.resent = 0
        self._offsets: dict[tuple[str, int], int] = {}
        self.schemas: dict[str, RoutedSchemas] = {}

    def routed(self, table: str, columns: Sequence[Column] | None = None, schema: str = "ax") -> RoutedSchemas:
        rs = routed_schemas(schema, table, tuple(columns or TABLES[table]))
        self.schemas[table] = rs
        return rs

    def change(self, table: str, op: str, row: dict[str, Any], *, columns: Sequence[Column] | None = None,
               subjob: str | None = None, schema: str = "ax", position: SourcePosition | None = None) -> Sent:
        rs = self.routed(table, columns, schema) if columns is not None or table not in self.schemas \
            else self.schemas[table]
        key = {c.field: row[c.field] for c in rs.key_columns}
        if position is None:
            src = f"{self.prefix}.hq.dbo.{table}"
            part = zlib.crc32(repr(tuple(key.values())).encode()) % 3
            off = self._offsets.get((src, part), 0)
            self._offsets[(src, part)] = off + 1
            position = SourcePosition(src, part, off)
        source = {"connector": "cdx", "name": "hq", "ts_ms": int(time.time() * 1000), "snapshot": "false",
                  "db": "hq", "schema": "dbo", "table": table, "change_version": position.offset, "version": "0.1.0"}
        value = make_value(rs, op=op, key=key, row=None if op == "d" else row, source=source,
                           ts_ms=int(time.time() * 1000), subjob=subjob or SUBJOB_OF.get(table, table),
                           position=position)
        kb = self.codec.encode_key(self.topic, rs.key, key)
        vb = self.codec.encode_value(self.topic, rs.value, value)
        assert vb is not None
        sent = Sent(table, op, key, None if op == "d" else dict(row), position, kb, vb)
        self._produce(sent)
        self.sent.append(sent)
        return sent

    def _produce(self, s: Sent) -> None:
        while True:
            try:
                self.producer.produce(self.topic, key=s.kb, value=s.vb)
                if s.op == "d":
                    self.producer.produce(self.topic, key=s.kb, value=None)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def resend(self, items: Iterable[Sent]) -> int:
        """Produce ``items`` again, as a restarted router would."""
        n = 0
        for s in items:
            self._produce(s)
            n += 1
        self.resent += n
        return n

    def raw(self, key: bytes, value: bytes | None) -> None:
        self.producer.produce(self.topic, key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0

    def ends(self) -> dict[int, int]:
        return high_watermarks(self.config, self.topic)


def expected_state(sent: Iterable[Sent], recid: int | None = None) -> dict[str, dict[tuple, dict[str, Any]]]:
    """Table -> key -> row after applying each change once, in order; CHANCFG filtered on STORE."""
    out: dict[str, dict[tuple, dict[str, Any]]] = {}
    for s in sent:
        rows = out.setdefault(s.table, {})
        k = tuple(s.key.values())
        if s.row is None or (s.table == "CHANCFG" and recid is not None and s.row["STORE"] != recid):
            rows.pop(k, None)
        else:
            rows[k] = s.row
    return out


def read_table(dialect_name: str, dsn: str, schema: str, table: str) -> dict[tuple, dict[str, Any]]:
    """Rows of a channel table keyed by primary key (values decoded by the dialect)."""
    d = get_dialect(dialect_name)
    conn = connect(dialect_name, dsn)
    try:
        if not d.table_exists(conn, schema, table):
            conn.rollback()
            return {}
        cols = d.introspect_columns(conn, schema, table)
        keys = [c.name for c in sorted((c for c in cols if c.primary_key), key=lambda c: c.key_position)]
        cur = conn.cursor()
        cur.execute(f"SELECT {d.columns_sql([c.name for c in cols])} FROM {d.qualified(schema, table)}")
        out = {}
        for raw in cur.fetchall():
            row = {c.name: d.decode(c, v) for c, v in zip(cols, raw, strict=True)}
            out[tuple(row[k] for k in keys)] = row
        conn.rollback()
        return out
    finally:
        conn.close()


def assert_tables_equal(db: Db, expected: dict[str, dict[tuple, dict[str, Any]]]) -> None:
    for table, rows in expected.items():
        actual = read_table(db.dialect, db.dsn, "ax", table)
        assert set(actual) == set(rows), (db.id, table, sorted(set(actual) ^ set(rows))[:10])
        for k, row in rows.items():
            got = {c: actual[k].get(c) for c in row}
            assert got == row, (db.id, table, k, got, row)


def stored_offsets(db: Db, topic: str) -> dict[int, int]:
    """The sink's offsets as its database holds them (read without taking a write lock)."""
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    try:
        try:
            return StateStore(d, topic).load(conn).offsets
        except Exception:
            return {}
        finally:
            conn.rollback()
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] | None = None
               ) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f": {on_fail()}" if on_fail else ""))
        time.sleep(0.1)


def workload(router: FakeRouter, n: int, seed: int = 1, *, keys: int = 500, resend_every: int = 0,
             tables: Sequence[str] = ("PARENT", "CHILD", "CHANCFG"), on_change: Callable[[int], None] | None = None
             ) -> None:
    """``n`` random inserts/updates/deletes over ``tables``; every ``resend_every`` changes a random
    earlier window is re-sent (router restart)."""
    rng = random.Random(seed)
    live: dict[str, set[int]] = {t: set() for t in tables}
    for i in range(n):
        table = rng.choice(tables)
        ids = live[table]
        r = rng.random()
        if ids and r < 0.2:
            k = rng.choice(sorted(ids))
            ids.discard(k)
            router.change(table, "d", _row(table, k, i, rng))
        else:
            k = rng.randrange(keys)
            op = "u" if k in ids else "c"
            ids.add(k)
            router.change(table, op, _row(table, k, i, rng))
        if resend_every and i and i % resend_every == 0:
            start = rng.randrange(max(1, len(router.sent) - 300), len(router.sent))
            router.resend(router.sent[start:start + rng.randint(1, 60)])
        if on_change is not None:
            on_change(i)


def _row(table: str, k: int, ver: int, rng: random.Random) -> dict[str, Any]:
    from datetime import datetime, timedelta
    from decimal import Decimal

    if table == "PARENT":
        return {"DATAAREAID": "usrt", "ID": k, "NAME": f"p{k}-{ver}", "PRICE": Decimal(rng.randint(0, 99999)) / 100,
                "VER": ver, "TS": datetime(2024, 1, 1) + timedelta(microseconds=ver * 1001)}
    if table == "CHILD":
        return {"ID": k, "PARENTID": k % 50, "TXT": f"c{ver}", "VER": ver}
    return {"RECID": k, "STORE": rng.choice((1, 2)), "NAME": f"cfg{ver}", "VER": ver}
