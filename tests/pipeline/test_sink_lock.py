"""Two ``cdx sink`` processes for the same channel database: exactly one applies (the channel lock in the
channel database), the other stands by saying which channel and who holds it, and takes over when the
holder is SIGKILLed. Real capture, router and sinks; channel database on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from cdx.dialects import ColumnInfo, LogicalType
from tests.pipeline.helpers import Databases, cli, database, pipeline, tail, wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}}}
hq: {{name: hq, dialect: sqlite, dsn: "{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs: [{{id: Notes, hq_table: dbo.NOTES, fields: [ID, TXT], scheduled_by: [J1]}}]
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels: [{{id: c1, database: {{dialect: {dialect}, dsn: "{c1}"}}}}]
distribution_schedules: [{{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}]
"""
NOTES = [ColumnInfo("ID", LogicalType.INT64, nullable=False), ColumnInfo("TXT", LogicalType.STRING, length=40)]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_second_sink_stands_by_and_takes_over(dialect: str, tmp_path: Path, kafka: str,
                                              request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("postgres_server") if dialect == "postgresql" else None
    hq_dsn, c1_dsn = database("sqlite", tmp_path, "hq", None), database(dialect, tmp_path, "c1", server)
    prefix = f"lk{uuid.uuid4().hex[:8]}"
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=prefix, hq=hq_dsn, dialect=dialect, c1=c1_dsn))
    hq, channel = Databases("sqlite"), Databases(dialect)
    with hq.dialect.transaction(hq.conn(hq_dsn)):
        hq.dialect.create_table(hq.conn(hq_dsn), "dbo", "NOTES", NOTES, ["ID"])
    table = hq.dialect.qualified("dbo", "NOTES")

    def insert(first: int, n: int) -> None:
        hq.run(hq_dsn, *[(f"INSERT INTO {table} VALUES ({{p}}, {{p}})", (i, f"n{i}")) for i in range(first, first + n)])

    def rows() -> int:
        d, conn = channel.dialect, channel.conn(c1_dsn)
        with d.transaction(conn):
            if not d.table_exists(conn, "ax", "NOTES"):
                return 0
            cur = conn.cursor()
            cur.execute(f"SELECT COUNT(*) FROM {d.qualified('ax', 'NOTES')}")
            return int(cur.fetchone()[0])

    def holder() -> dict[str, object]:
        d, conn = channel.dialect, channel.conn(c1_dsn)
        with d.transaction(conn):
            return json.loads(d.read_state(conn, f"lock:{prefix}-sink-c1").get("holder", "{}"))

    group = pipeline(tmp_path, path)
    try:
        cli(group, "hq", "enable-tracking")
        insert(0, 20)
        for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink-a", ["sink"])):
            group.start(name, args)
        a = group.roles["sink-a"]
        wait_for(lambda: None if rows() == 20 else f"{rows()} rows", group, 120, "sink a applies")
        assert holder()["pid"] == a.proc.pid

        b = group.start("sink-b", ["sink"])
        standby = f"channel c1: another process is applying to this channel database (held by cdx sink pid {a.proc.pid}"
        wait_for(lambda: None if standby in b.log.read_text() else "no standby message", group, 60,
                 "sink b stands by")
        insert(20, 20)
        wait_for(lambda: None if rows() == 40 else f"{rows()} rows", group, 120, "sink a goes on applying")
        assert "assigned" not in b.log.read_text(), tail(b.log)  # b never joined the consumer group
        assert holder()["pid"] == a.proc.pid

        os.killpg(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        del group.roles["sink-a"]
        insert(40, 20)
        wait_for(lambda: None if rows() == 60 else f"{rows()} rows", group, 120, "sink b takes over")
        assert holder()["pid"] == b.proc.pid
        assert "assigned" in b.log.read_text()
    finally:
        group.stop_all()
        hq.close()
        channel.close()
