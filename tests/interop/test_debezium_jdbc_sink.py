"""Debezium's JDBC sink (3.6.0.Final on Kafka Connect 4.3.0, JsonConverter) consumes cdx's topics.

cdx capture and router run with ``kafka.encoding: connect-json`` over a PostgreSQL HQ; after inserts,
updates (NULLs included), deletes and a re-insert of a deleted key, Debezium's sink applies the HQ
table topic and the group topic to a PostgreSQL database: both tables must equal HQ's view.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cdx.infra.postgres import launcher
from cdx.kafka.reading import read_to_end
from tests.interop.common import COLUMNS, CREATE_ITEMS, change_items, insert_items, read_rows, tables_of
from tests.interop.harness import Connect, spawn_cdx, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.interop]

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, encoding: connect-json}}
hq: {{name: hq, dialect: postgresql, dsn: "{hq}"}}
jobs:
  - {{id: "1040", direction: download}}
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: [ITEMID, NAME, PRICE, QTY, UPDATED, AVAILABLE], scheduled_by: ["1040"]}}
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: c1, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/c1.db"}}}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: ["1040"], channel_data_groups: [g1]}}
"""


def jdbc_url(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"jdbc:postgresql://{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"


def jdbc_sink(topics: list[str], dsn: str, **extra: Any) -> dict[str, Any]:
    return {"connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector", "tasks.max": 1,
            "topics": ",".join(topics), "connection.url": jdbc_url(dsn), "connection.username": "postgres",
            "connection.password": "unused", "insert.mode": "upsert", "primary.key.mode": "record_key",
            "delete.enabled": "true", "schema.evolution": "basic", "batch.size": 4096, **extra}


def ops_of(bootstrap: str, topic: str) -> set[str | None]:
    """The ``op`` of every record of a Connect JSON topic (None for a tombstone)."""
    return {json.loads(m.value())["payload"]["op"] if m.value() else None
            for m in read_to_end({"bootstrap.servers": bootstrap}, topic)}


def _matching(dsn: str, fragment: str) -> str | None:
    return next((t for t in tables_of(dsn) if fragment in t.casefold()), None)


def test_debezium_jdbc_sink_reads_cdx_table_and_group_topics(kafka: str, postgres_server: str,
                                                             tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    hq = launcher.create_database(postgres_server, f"ix_hq_{run}")
    target = launcher.create_database(postgres_server, f"ix_dbz_{run}")
    with psycopg.connect(hq, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA dbo")
        conn.execute(CREATE_ITEMS.format(table='dbo."ITEMS"'))
    items = sql.Identifier("dbo", "ITEMS")
    insert_items(hq, items, 0, 60)
    prefix = f"ix{run}"
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=prefix, hq=hq, tmp=tmp_path))
    assert spawn_cdx(tmp_path, "tracking", "hq", "enable-tracking", "-t", str(path)).wait(120) == 0
    procs = [spawn_cdx(tmp_path, "capture", "capture", "-t", str(path)),
             spawn_cdx(tmp_path, "router", "route", "-t", str(path), "--datadir", str(tmp_path / "router"))]
    connect = None
    try:
        # changes after the snapshot, so the topics carry updates, deletes and tombstones (not only reads)
        wait_until(lambda: "snapshot of dbo.ITEMS" in (tmp_path / "capture.log").read_text(), 120, "capture snapshot",
                   lambda: (tmp_path / "capture.log").read_text()[-2000:], alive=lambda: procs[0].poll() is None)
        change_items(hq, items)
        table_topic, group_topic = f"{prefix}.hq.dbo.ITEMS", f"{prefix}.group.g1"
        connect = Connect(tmp_path / "connect", kafka, {"jdbc-sink": jdbc_sink([table_topic, group_topic], target)},
)
        want = read_rows(hq, "dbo", "ITEMS")
        group_cols = tuple(c for c in COLUMNS)

        def both_equal() -> bool:
            t, g = _matching(target, "dbo_items"), _matching(target, "group")
            if t is None or g is None:
                return False
            return read_rows(target, "public", t) == want and read_rows(target, "public", g, group_cols) == want

        def why() -> str:
            logs = "\n".join(f"--- {p.args[3]}: {(tmp_path / (p.args[3] + '.log')).read_text()[-1500:]}"
                             for p in procs if (tmp_path / (str(p.args[3]) + '.log')).exists())
            return f"tables {tables_of(target)}\n{connect.tail() if connect else ''}\n{logs}"

        wait_until(both_equal, 300, "Debezium JDBC sink tables equal HQ", why, alive=connect.alive)
        assert len(want) == 51
        assert not connect.errors(), connect.tail()
        assert ops_of(kafka, table_topic) >= {"r", "u", "d", None} and ops_of(kafka, group_topic) >= {"u", "d", None}
    finally:
        if connect is not None:
            connect.stop()
        for p in procs:
            stop(p)

