"""Download extension tables end to end: real ``cdx capture`` -> ``cdx route`` -> ``cdx sink`` processes
on SQLite and PostgreSQL (HQ and channels), with channel filters on an extension field and on a field of
the subjob's own table. Nothing is fabricated: every record is the one the real roles write."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdx.dialects import ColumnInfo, LogicalType
from cdx.topology import load_topology
from cdx.verify import verify_channel
from tests.pipeline.helpers import Databases, cli, database, pipeline, wait_for

pytestmark = pytest.mark.integration

S, I64 = LogicalType.STRING, LogicalType.INT64
ITEMS = [ColumnInfo("DATAAREAID", S, nullable=False, length=4), ColumnInfo("ITEMID", S, nullable=False, length=20),
         ColumnInfo("NAME", S, length=60), ColumnInfo("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
         ColumnInfo("STORE", I64), ColumnInfo("COLOR", S, length=20)]
TERMS = [ColumnInfo("ID", I64, nullable=False), ColumnInfo("STORERECID", I64), ColumnInfo("NAME", S, length=40),
         ColumnInfo("HW", S, length=40)]

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 2}}
hq: {{name: hq, dialect: {dialect}, dsn: "{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
  - id: Items
    hq_table: dbo.ITEMS
    fields: [ITEMID, {{name: NAME, to_name: ITEMNAME}}, PRICE]
    scheduled_by: [J1]
    extension: {{table: ext.ITEMSX, fields: [{{name: COLOR, to_name: ITEMCOLOR}}, STORE]}}
    channel_filter: {{column: STORE, attribute: recid}}        # a field of the extension table
  - id: Terms
    hq_table: dbo.TERMS
    fields: [ID, STORERECID, NAME]
    scheduled_by: [J1]
    extension: {{table: ext.TERMSX, key: [ID], fields: [{{name: HW, to_name: HARDWARE}}]}}
    channel_filter: {{column: STORERECID, attribute: recid}}   # the extension table lacks it
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: c1, database: {{dialect: {dialect}, dsn: "{c1}"}}, attributes: {{recid: 1}}}}
      - {{id: c2, database: {{dialect: {dialect}, dsn: "{c2}"}}, attributes: {{recid: 2}}}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}
"""


class Model:
    """What HQ holds, kept by the test beside the SQL it runs (the expectation, independent of cdx)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.terms: dict[int, dict[str, Any]] = {}

    def channel(self, recid: int) -> dict[str, set[Any]]:
        """Keys each table of the channel with ``recid`` must hold."""
        items = {k[1] for k, r in self.items.items() if k[0] == "usrt" and r["STORE"] == recid}
        terms = {k for k, r in self.terms.items() if r["STORERECID"] == recid}
        return {"ax.ITEMS": items, "ext.ITEMSX": items, "ax.TERMS": terms, "ext.TERMSX": terms}


def _sql_item(model: Model, le: str, item: str, store: int | None, color: str, name: str = "n") -> tuple[str, tuple]:
    model.items[(le, item)] = {"STORE": store, "COLOR": color}
    return ("INSERT INTO {items} VALUES ({p}, {p}, {p}, {p}, {p}, {p})", (le, item, name, Decimal("1.5"), store, color))


def _initial(model: Model) -> list[tuple[str, tuple]]:
    out = [_sql_item(model, "usrt", f"I{i:02d}", i % 3 + 1, f"c{i}") for i in range(24)]
    out += [_sql_item(model, "frrt", f"I{i:02d}", 1, "other") for i in range(4)]  # not the group's entity
    for i in range(9):
        model.terms[i] = {"STORERECID": i % 3 + 1}
        out.append(("INSERT INTO {terms} VALUES ({p}, {p}, {p}, {p})", (i, i % 3 + 1, f"t{i}", f"hw{i}")))
    return out


def _live(model: Model) -> list[list[tuple[str, tuple]]]:
    """Transactions that move rows between channels through the extension field and the own field."""
    def store(item: str, value: int | None) -> tuple[str, tuple]:
        model.items[("usrt", item)]["STORE"] = value
        return ("UPDATE {items} SET \"STORE\" = {p} WHERE \"DATAAREAID\" = 'usrt' AND \"ITEMID\" = {p}", (value, item))

    def delete(item: str) -> tuple[str, tuple]:
        del model.items[("usrt", item)]
        return ("DELETE FROM {items} WHERE \"DATAAREAID\" = 'usrt' AND \"ITEMID\" = {p}", (item,))

    def term_store(tid: int, value: int) -> tuple[str, tuple]:
        model.terms[tid]["STORERECID"] = value
        return ("UPDATE {terms} SET \"STORERECID\" = {p} WHERE \"ID\" = {p}", (value, tid))

    def term_delete(tid: int) -> tuple[str, tuple]:
        del model.terms[tid]
        return ("DELETE FROM {terms} WHERE \"ID\" = {p}", (tid,))

    return [
        [store("I00", 2), store("I01", 1), store("I02", None)],      # c1 -> c2, c2 -> c1, c3 -> nowhere
        [("UPDATE {items} SET \"COLOR\" = 'red' WHERE \"ITEMID\" = 'I03'", ()), delete("I04"), delete("I05")],
        [term_store(0, 2), term_store(1, 1), term_delete(3), term_delete(4)],
        [("UPDATE {terms} SET \"HW\" = 'new' WHERE \"ID\" = 6", ()), store("I03", 3), store("I06", 2)],
        [_sql_item(model, "usrt", "I99", 1, "late"), store("I99", 2)],
    ]


def _channel_keys(dbs: Databases, dsn: str) -> dict[str, set[Any]]:
    d = dbs.dialect
    conn = dbs.conn(dsn)
    out: dict[str, set[Any]] = {}
    with d.transaction(conn):
        for schema, table, col in (("ax", "ITEMS", "ITEMID"), ("ext", "ITEMSX", "ITEMID"),
                                   ("ax", "TERMS", "ID"), ("ext", "TERMSX", "ID")):
            if not d.table_exists(conn, schema, table):
                out[f"{schema}.{table}"] = set()
                continue
            cur = conn.cursor()
            cur.execute(f"SELECT {d.quote_ident(col)} FROM {d.qualified(schema, table)}")
            out[f"{schema}.{table}"] = {r[0] for r in cur.fetchall()}
    return out


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_extension_tables_and_extension_filters_end_to_end(dialect: str, tmp_path: Path, kafka: str,
                                                           request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("postgres_server") if dialect == "postgresql" else None
    dsns = {n: database(dialect, tmp_path, n, server) for n in ("hq", "c1", "c2")}
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=f"ext{uuid.uuid4().hex[:8]}", dialect=dialect,
                                    **dsns))
    topo = load_topology(path)
    dbs = Databases(dialect)
    d = dbs.dialect
    hq = dbs.conn(dsns["hq"])
    with d.transaction(hq):
        d.ensure_schema(hq, "dbo")
        d.create_table(hq, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
        d.create_table(hq, "dbo", "TERMS", TERMS, ["ID"])
    names = {"items": d.qualified("dbo", "ITEMS"), "terms": d.qualified("dbo", "TERMS")}

    def run(statements: list[tuple[str, tuple]]) -> None:
        dbs.run(dsns["hq"], *[(sql.replace("{items}", names["items"]).replace("{terms}", names["terms"]), a)
                              for sql, a in statements])

    group = pipeline(tmp_path, path)
    model = Model()
    try:
        cli(group, "hq", "enable-tracking")
        run(_initial(model))
        for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink", ["sink"])):
            group.start(name, args)
        for tx in _live(model):
            run(tx)

        def converged() -> str | None:
            for owner, recid in (("c1", 1), ("c2", 2)):
                got, want = _channel_keys(dbs, dsns[owner]), model.channel(recid)
                if got != want:
                    return f"{owner}: {got} != {want}"
            return None

        wait_for(converged, group, 180, "both channels hold their rows")
    finally:
        group.stop_all()
    for owner in ("c1", "c2"):
        report = verify_channel(hq, d, dbs.conn(dsns[owner]), d, topo, owner)
        assert report.ok, report.summary()
    c1 = dbs.conn(dsns["c1"])
    cur = c1.cursor()
    cur.execute(f"SELECT {d.quote_ident('ITEMCOLOR')}, {d.quote_ident('STORE')}, {d.quote_ident('DATAAREAID')} "
                f"FROM {d.qualified('ext', 'ITEMSX')} WHERE {d.quote_ident('ITEMID')} = 'I01'")
    assert cur.fetchall() == [("c1", 1, "usrt")]  # moved in through its extension field, extension row whole
    dbs.close()
