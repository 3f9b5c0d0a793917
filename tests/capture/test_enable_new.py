"""``enable_new_tables`` (``cdx hq enable-tracking --only-new``): tracking only where it is missing, idempotent,
no DDL on tables already tracked. Real SQLite HQ, no Kafka."""

from __future__ import annotations

from pathlib import Path

from cdx.connectors.capture.enable import enable_new_tables
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.topology import parse_topology

TOPOLOGY = """
kafka: {{bootstrap_servers: "127.0.0.1:1"}}
hq: {{dsn: "sqlite:///{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
{subjobs}
"""
ITEMS = "  - {id: Items, hq_table: dbo.ITEMS, fields: [ID], scheduled_by: [J1]}"
TERMS = "  - {id: Terms, hq_table: dbo.TERMS, fields: [ID], scheduled_by: [J1]}"


def _triggers(path: Path) -> list[tuple[str, str]]:
    conn = connect("sqlite", f"sqlite:///{path}")
    try:
        return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
    finally:
        conn.close()


def test_only_untracked_tables_are_enabled_and_a_second_run_does_nothing(tmp_path: Path) -> None:
    hq = tmp_path / "hq.db"
    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{hq}")
    with d.transaction(conn):
        for table in ("ITEMS", "TERMS"):
            d.create_table(conn, "dbo", table, [ColumnInfo("ID", LogicalType.INT64, nullable=False)], ["ID"])
    conn.close()
    one = parse_topology(TOPOLOGY.format(hq=hq, subjobs=ITEMS), source="t.yaml")
    two = parse_topology(TOPOLOGY.format(hq=hq, subjobs=f"{ITEMS}\n{TERMS}"), source="t.yaml")
    assert [str(t) for t in enable_new_tables(one)] == ["dbo.ITEMS"]
    before = _triggers(hq)
    assert enable_new_tables(one) == []
    assert _triggers(hq) == before  # nothing re-installed on a tracked table
    assert [str(t) for t in enable_new_tables(two)] == ["dbo.TERMS"]
    after = _triggers(hq)
    assert set(before) < set(after) and enable_new_tables(two) == []
