"""The download-side steps of ``cdx topology apply``: new fields are checked against the HQ table before
anything runs, and each download change gets a step saying what the roles do. Real SQLite HQ, no Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx.cli.apply_download import download_changes
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.errors import ConfigError
from cdx.topology import parse_topology
from cdx.topology.diff import diff_topologies

TOPOLOGY = """
kafka: {{bootstrap_servers: "127.0.0.1:1"}}
hq: {{dsn: "sqlite:///{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: {fields}, scheduled_by: [J1]}}
channel_data_groups:
  - {{id: g1, legal_entities: {le}, channels: [{{id: c1, database: {{dsn: "sqlite:///c1.db"}}}}]}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}
"""


def test_new_fields_are_checked_at_hq_and_each_change_gets_a_step(tmp_path: Path) -> None:
    hq = tmp_path / "hq.db"
    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{hq}")
    with d.transaction(conn):
        d.create_table(conn, "dbo", "ITEMS", [ColumnInfo("ITEMID", LogicalType.STRING, nullable=False, length=20),
                                              ColumnInfo("PRICE", LogicalType.INT64)], ["ITEMID"])
    conn.close()

    def topo(fields: str, le: str = "[usrt]"):  # type: ignore[no-untyped-def]
        return parse_topology(TOPOLOGY.format(hq=hq, fields=fields, le=le), source="t.yaml")

    old = topo("[ITEMID]")
    new = topo("[ITEMID, {name: PRICE, to_name: ITEMPRICE}]", "[usrt, frrt]")
    steps = list(download_changes(old, new, diff_topologies(old, new)))
    text = "\n".join(description for description, _run in steps)
    assert "field PRICE added" in text and "fill it for every existing row" in text
    assert "gains legal entities frrt" in text and "rows of frrt come into its channels" in text
    assert all("when they take the revision" in (run() or "") for _d, run in steps)
    assert list(download_changes(None, new, [])) == []  # a first apply: no diff, nothing to say
    bad = topo("[ITEMID, COLOUR]")
    with pytest.raises(ConfigError, match=r"dbo\.ITEMS has no column COLOUR"):
        list(download_changes(old, bad, diff_topologies(old, bad)))
