"""Test helpers for capture: a minimal topology over two HQ tables, and reading table topics."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cdx.codec import SchemaStore, SingleObjectCodec
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import schemas_topic, table_topic
from cdx.topology.loader import load_topology
from cdx.topology.root import Topology

ITEMS = [
    ColumnInfo("DATAAREAID", LogicalType.STRING, nullable=False, length=4),
    ColumnInfo("ITEMID", LogicalType.STRING, nullable=False, length=20),
    ColumnInfo("NAME", LogicalType.STRING, length=60),
    ColumnInfo("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
    ColumnInfo("QTY", LogicalType.INT64),
]
NOTES = [
    ColumnInfo("ID", LogicalType.INT64, nullable=False),
    ColumnInfo("TXT", LogicalType.STRING),
]

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 3}}
hq: {{name: hq, dialect: {dialect}, dsn: "{dsn}"}}
jobs:
  - {{id: "1040", direction: download}}
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: [ITEMID, NAME, PRICE, QTY], scheduled_by: ["1040"]}}
  - {{id: Notes, hq_table: dbo.NOTES, fields: [ID, TXT], scheduled_by: ["1040"]}}
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: c1, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/c1.db"}}}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: ["1040"], channel_data_groups: [g1]}}
"""


def hq_dsn(dialect: str, tmp: Path, postgres: str | None) -> str:
    return f"sqlite:///{tmp}/hq.db" if dialect == "sqlite" else str(postgres)


def make_hq(dialect: str, dsn: str) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        d.create_table(conn, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
        d.create_table(conn, "dbo", "NOTES", NOTES, ["ID"])
    conn.close()


def write_topology(tmp: Path, bootstrap: str, dialect: str, dsn: str) -> tuple[Path, Topology]:
    prefix = f"cap{uuid.uuid4().hex[:8]}"
    text = TOPOLOGY.format(bootstrap=bootstrap, prefix=prefix, dialect=dialect, dsn=dsn, tmp=tmp)
    path = tmp / "topology.yaml"
    path.write_text(text)
    return path, load_topology(path)


def read_table(topo: Topology, table: str) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every committed (key, envelope-or-None) of a table topic, in offset order per partition."""
    k = topo.kafka
    cfg = client_config(k.bootstrap_servers)
    codec = SingleObjectCodec(SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix)))
    topic = table_topic(k.topic_prefix, topo.hq.name, "dbo", table)
    out = []
    for msg in read_to_end(cfg, topic):
        out.append((codec.decode_key(topic, msg.key() or b""), codec.decode_value(topic, msg.value())))
    return out


def last_state(records: Iterable[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[tuple, dict[str, Any]]:
    state: dict[tuple, dict[str, Any]] = {}
    for key, env in records:
        k = tuple(sorted(key.items()))
        if env is None or env["op"] == "d":
            state.pop(k, None)
        else:
            state[k] = env["after"]
    return state
