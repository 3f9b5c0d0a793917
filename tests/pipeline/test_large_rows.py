"""A row larger than Kafka's 1 MB default crosses every hop: real ``cdx capture`` -> ``cdx route`` ->
``cdx sink``. Capture, the router's group topics and producer, and the sink all take records up to
``kafka.max_message_bytes`` (default 8 MiB), so a 3 MB row reaches the channel intact."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.pipeline.helpers import Databases, cli, database, pipeline, wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}}}
hq: {{name: hq, dialect: sqlite, dsn: "{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs: [{{id: Notes, hq_table: dbo.NOTES, fields: [ID, TXT], scheduled_by: [J1]}}]
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: store, database: {{dialect: sqlite, dsn: "{store}"}}}}
distribution_schedules: [{{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}]
"""

BIG = "x" * (3 * 1024 * 1024)


def test_a_3mb_row_reaches_the_channel(tmp_path: Path, kafka: str) -> None:
    dsns = {"hq": database("sqlite", tmp_path, "hq", None), "store": database("sqlite", tmp_path, "store", None)}
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=f"lr{uuid.uuid4().hex[:8]}", **dsns))
    hq, store = Databases("sqlite"), Databases("sqlite")
    notes = hq.dialect.qualified("dbo", "NOTES")
    hq.run(dsns["hq"], (f'CREATE TABLE {notes} ("ID" INTEGER PRIMARY KEY, "TXT" TEXT)', ()),
           (f"INSERT INTO {notes} VALUES ({{p}}, {{p}})", (1, BIG)),
           (f"INSERT INTO {notes} VALUES ({{p}}, {{p}})", (2, "small")))

    def rows() -> dict[int, str]:
        d, conn = store.dialect, store.conn(dsns["store"])
        with d.transaction(conn):
            if not d.table_exists(conn, "ax", "NOTES"):
                return {}
            cur = conn.cursor()
            cur.execute(f"SELECT {d.columns_sql(['ID', 'TXT'])} FROM {d.qualified('ax', 'NOTES')}")
            return {int(i): t for i, t in cur.fetchall()}

    group = pipeline(tmp_path, path)
    try:
        cli(group, "hq", "enable-tracking")
        for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink", ["sink"])):
            group.start(name, args)
        wait_for(lambda: None if len(rows()) == 2 else f"{len(rows())} of 2 rows", group, 180, "both rows")
        got = rows()
    finally:
        group.stop_all()
        hq.close()
        store.close()
    assert got[2] == "small" and len(got[1]) == len(BIG) and got[1] == BIG
