"""The byte-level path (``cdx.streams.fastpath``) makes exactly the records the decoding path makes.

Capture's own encoder (``cdx.connectors.capture.records.ChangeEncoder``) writes the table-topic records;
two ``RecordRouter`` s route them, one with the byte-level path and one decoding every record, and
their outputs (group records, tombstone headers, key-state changelog) must be equal byte for byte.
The workload covers moves between legal entities, deletes of keys never seen, tombstones,
backfills for some groups, nulls, multi-byte lengths and numbers, an extension table and an
integer channel filter.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdx.codec import Column, LogicalType, SchemaPublisher, SchemaStore, SingleObjectCodec
from cdx.codec.envelope import Op
from cdx.connectors.capture.records import ChangeEncoder
from cdx.streams.avroscan import EnvelopeLayout
from cdx.streams.batch import RecordRouter
from cdx.streams.keystate import KeyState, MemoryKeys
from cdx.streams.routing import RoutingPlan
from cdx.topology import Topology, load_topology
from tests.routing.helpers import TABLES, topology_text

S = LogicalType.STRING
EXT = """
kafka: {bootstrap_servers: "localhost:1", topic_prefix: p}
hq: {name: hq, dialect: sqlite, dsn: "sqlite:///hq.db"}
jobs: [{id: J, direction: download}]
subjobs:
  - id: T
    hq_table: dbo.T
    fields: [ID, {name: A, to_name: A_CH}]
    scheduled_by: [J]
    channel_filter: {column: STORE, attribute: recid}
    extension: {table: ext.TX, fields: [{name: B, to_name: B_CH}, STORE]}
channel_data_groups:
  - {id: g, legal_entities: [usrt], channels: [{id: c, database: {dsn: "sqlite:///c.db"}, attributes: {recid: 7}}]}
  - {id: h, legal_entities: [usrt, dert]}
distribution_schedules: [{id: D, direction: download, jobs: [J], channel_data_groups: [g, h]}]
"""
EXT_COLS = (Column("ID", LogicalType.INT64, primary_key=True), Column("DATAAREAID", S), Column("A", S),
            Column("B", S), Column("STORE", LogicalType.INT64))


class Producer:
    def __init__(self) -> None:
        self.out: list[tuple[str, bytes | None, bytes | None, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> None:
        self.out.append((topic, key, value, headers))

    def poll(self, _timeout: float = 0) -> int:
        return 0


class Msg:
    def __init__(self, topic: str, offset: int, key: bytes, value: bytes | None) -> None:
        self._t, self._o, self._k, self._v = topic, offset, key, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes | None:
        return self._v


def routers(topology: Topology, store: SchemaStore) -> tuple[RecordRouter, RecordRouter, Producer, Producer]:
    made = []
    for fast in (True, False):
        out = Producer()
        codec = SingleObjectCodec(store, SchemaPublisher(out, "p._schemas"))
        made.append((RecordRouter(RoutingPlan(topology), codec, KeyState({}, "p._router_keys", MemoryKeys()), out,
                                  "p.dlq", fast=fast), out))
    return made[0][0], made[1][0], made[0][1], made[1][1]


def text(rng: random.Random) -> str | None:
    return rng.choice([None, "", "x", "é" * rng.randrange(1, 200), "ünï" * rng.randrange(30, 90)])


def row_of(table: str, key: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    entity = rng.choice(["usrt", "dert", "frrt", " USRT ", None])
    if table == "T":
        return {**key, "DATAAREAID": entity, "A": text(rng), "B": text(rng),
                "STORE": rng.choice([None, 7, -7, 2**40, 0])}
    row = {c.name: text(rng) for c in TABLES[table] if c.type is S and not c.primary_key}
    if table == "ITEMS":
        row.update(PRICE=rng.choice([None, Decimal("-12345678901234.5678"), Decimal("0.0001")]),
                   QTY=rng.choice([None, -1, 2**62, 63, 64]))
    if "DATAAREAID" in row:
        row["DATAAREAID"] = entity
    return {**row, **key}


def run(topology: Topology, tables: dict[str, tuple[Column, ...]], n: int, seed: int) -> tuple[int, int]:
    """Route ``n`` random changes through both paths; returns (records compared, records routed on bytes)."""
    rng = random.Random(seed)
    store = SchemaStore()
    fast, slow, fast_out, slow_out = routers(topology, store)
    writer = SingleObjectCodec(store)
    encoders = {t: ChangeEncoder(writer, f"p.hq.dbo.{t}", store.register_table(f"p.hq.dbo.{t}", cols),
                                 hq_name="hq", schema="dbo", table=t) for t, cols in tables.items()}
    keys: dict[str, list[dict[str, Any]]] = {t: [] for t in tables}
    plan = RoutingPlan(topology)
    for offset in range(n):
        table = rng.choice(list(tables))
        pk = [c for c in tables[table] if c.primary_key]
        if keys[table] and rng.random() < 0.6:
            key = rng.choice(keys[table])
        else:
            key = {c.name: (rng.choice(["usrt", "dert"]) if c.name == "DATAAREAID" else
                            rng.randrange(-10**12, 10**12) if c.type is LogicalType.INT64 else
                            f"K{rng.randrange(10**6)}") for c in pk}
            keys[table].append(key)
        op = rng.choice([Op.CREATE, Op.UPDATE, Op.UPDATE, Op.READ, Op.DELETE])
        enc = encoders[table]
        kb, vb = enc.encode(op, key, None if op is Op.DELETE else row_of(table, key, rng), offset, 1700000000000)
        records = [Msg(enc.topic, offset, kb, vb)]
        if op is Op.DELETE:
            records.append(Msg(enc.topic, offset, kb, None))
        wanted = None if rng.random() < 0.8 else rng.sample(plan.groups_of(enc.topic), 1)
        for msg in records:
            assert fast.route(msg, wanted) == slow.route(msg, wanted)  # type: ignore[arg-type]
        if rng.random() < 0.05:  # a transaction ends: committed, or aborted (the schemas are published again)
            aborted = rng.random() < 0.5
            for r in (fast, slow):
                if aborted:
                    r.producer.produce("ABORT")
                    r.keys.abort()
                    r.reset()
                    r.codec.publisher.transaction_aborted()  # type: ignore[attr-defined]
                else:
                    r.producer.produce("COMMIT")
                    r.keys.commit()
                    r.codec.publisher.transaction_committed()  # type: ignore[attr-defined]
    assert [r for r in fast_out.out if r[0] != "p._schemas"] == [r for r in slow_out.out if r[0] != "p._schemas"]
    committed: set[bytes] = set()
    pending: set[bytes] = set()
    for topic, key, value, _ in fast_out.out:  # every routed schema is in the transaction (or before) that uses it
        if topic in ("ABORT", "COMMIT"):
            committed |= pending if topic == "COMMIT" else set()
            pending = set()
        elif topic == "p._schemas":
            pending.add(bytes.fromhex((key or b"").decode()))
        elif topic.startswith("p.group."):
            known = committed | pending
            assert key is not None and key[2:10] in known and (value is None or value[2:10] in known)
    return len(fast_out.out), fast.fast_routed


def test_the_byte_level_path_makes_what_decoding_makes(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(topology_text("localhost:1", "p", tmp_path, notes=True, extra_group="more"))
    compared, on_bytes = run(load_topology(path), TABLES, 2000, 1)
    assert compared > 2000 and on_bytes > 1000  # most records took the byte-level path


def test_extension_tables_and_an_integer_channel_filter(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(EXT)
    compared, on_bytes = run(load_topology(path), {"T": EXT_COLS}, 1000, 2)
    assert compared > 1000 and on_bytes > 500


def test_layouts_it_does_not_handle_are_left_to_decoding() -> None:
    assert EnvelopeLayout.compile({"type": "record", "name": "X", "fields": [{"name": "a", "type": "string"}]}) is None
    store = SchemaStore()
    schemas = store.register_table("p.hq.dbo.ITEMS", TABLES["ITEMS"])
    layout = EnvelopeLayout.compile(schemas.value.to_dict())
    assert layout is not None and layout.names[:2] == ("DATAAREAID", "ITEMID")
    enc = ChangeEncoder(SingleObjectCodec(store), "p.hq.dbo.ITEMS", schemas, hq_name="hq", schema="dbo",
                        table="ITEMS")
    _, value = enc.encode(Op.UPDATE, {"DATAAREAID": "usrt", "ITEMID": "I"},
                          {"DATAAREAID": "usrt", "ITEMID": "I", "NAME": None}, 1, 2)
    assert layout.scan(value, 10) is not None
    assert layout.scan(value[:-3], 10) is None  # truncated
    assert layout.scan(value[:10] + b"\x04" + value[11:], 10) is None  # neither upsert nor delete


def test_transactions_stay_short_under_load_and_large_under_backlog() -> None:
    from cdx.streams.engine import Cadence

    c = Cadence(5000, max_seconds=0.25)
    assert c.limit() == 5000  # nothing measured yet
    c.observe(5000, 0.1)  # 20 us a record: a full batch fits in 0.25 s
    assert c.limit() == 5000
    for _ in range(30):
        c.observe(1000, 0.5)  # 500 us a record (a loaded machine): about 0.25 s of records
    assert 500 <= c.limit() <= 600
    c.observe(3, 10.0)  # a few records say nothing about the cost
    assert 500 <= c.limit() <= 600
