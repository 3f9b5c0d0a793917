"""Topology changes on the download side, end to end, while HQ keeps changing: each applied with
``cdx topology apply`` (published on the control topic, every role takes it between two batches); real
``cdx capture``, ``cdx route`` and ``cdx sink`` processes, a real broker, SQLite and PostgreSQL (HQ and channels).

One pipeline goes through, in turn: a new field with and without ``to_name`` (the columns appear and
are backfilled for rows HQ never touches again, from the compacted table topic, no HQ load); a
removed field (its column stays with its values, no longer written); a changed legal-entity set (rows
move in and out of channels); a new subjob on an HQ table that already has rows (tracking, snapshot,
routing, table created in the channels); a channel filter added (the router re-routes, the sinks resync);
a channel's filter attribute changed (that sink resyncs). A writer thread changes HQ all along; it pauses
only for each check, which compares every channel with HQ's scoped view (``cdx.verify``)."""

from __future__ import annotations

import random
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdx.connectors.sink import sessions
from cdx.dialects import ColumnInfo, LogicalType
from cdx.topology import load_topology
from cdx.verify import verify_channel
from tests.pipeline.helpers import Databases, cli, database, pipeline, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.rollout_long]

S = LogicalType.STRING
ITEMS = [ColumnInfo("DATAAREAID", S, nullable=False, length=4), ColumnInfo("ITEMID", S, nullable=False, length=20),
         ColumnInfo("NAME", S, length=60), ColumnInfo("PRICE", LogicalType.DECIMAL, precision=18, scale=4),
         ColumnInfo("COLOR", S, length=20)]
TERMS = [ColumnInfo("ID", LogicalType.INT64, nullable=False), ColumnInfo("LABEL", S, length=40),
         ColumnInfo("STORE", LogicalType.INT64)]
ENTITIES = ("usrt", "frrt", "jmrt")
UNTOUCHED = 15
"""Items I000..I014 of each legal entity are never changed after the start: only a re-route fills them."""

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 2}}
hq: {{name: hq, dialect: {dialect}, dsn: "{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: {fields}, scheduled_by: [J1]}}
{terms}channel_data_groups:
  - id: g1
    legal_entities: {le1}
    channels: [{{id: c1, database: {{dialect: {dialect}, dsn: "{c1}"}}, attributes: {{store: {store1}}}}}]
  - id: g2
    legal_entities: {le2}
    channels: [{{id: c2, database: {{dialect: {dialect}, dsn: "{c2}"}}, attributes: {{store: 2}}}}]
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1, g2]}}
"""
TERMS_SUBJOB = ("  - {{id: Terms, hq_table: dbo.TERMS, fields: [ID, {{name: LABEL, to_name: TERMLABEL}}, STORE],"
                " scheduled_by: [J1]{filter}}}\n")
V1 = {"fields": "[ITEMID, NAME]", "le1": "[usrt]", "le2": "[frrt]", "terms": "", "store1": "1"}
V2 = {**V1, "fields": "[ITEMID, NAME, PRICE, {name: COLOR, to_name: ITEMCOLOR}]"}   # two new fields
V3 = {**V2, "fields": "[ITEMID, PRICE, {name: COLOR, to_name: ITEMCOLOR}]"}         # NAME removed
V4 = {**V3, "le1": "[usrt, frrt]", "le2": "[jmrt]"}                                 # rows move
V5 = {**V4, "terms": TERMS_SUBJOB.format(filter="")}                                # a new subjob
V6 = {**V5, "terms": TERMS_SUBJOB.format(filter=", channel_filter: {column: STORE, attribute: store}")}
V7 = {**V6, "store1": "3"}                                                          # c1's filter value


class Writer(threading.Thread):
    """Changes HQ items (never the untouched ones) in small transactions until stopped; ``pause`` holds it."""

    def __init__(self, dialect: str, dsn: str, table: str) -> None:
        super().__init__(daemon=True)
        self.dbs = Databases(dialect)
        self.dsn, self.table = dsn, table
        self.stop_event, self.running = threading.Event(), threading.Event()
        self.idle = threading.Event()
        self.running.set()
        self.error: BaseException | None = None
        self.rng = random.Random(7)
        self.next_id = 100
        self.live: list[tuple[str, str]] = []

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self.running.is_set():
                    self.idle.set()
                    self.running.wait(0.2)
                    continue
                self.idle.clear()
                self.dbs.run(self.dsn, *self._transaction())
                self.stop_event.wait(0.01)
        except BaseException as exc:
            self.error = exc
        finally:
            self.idle.set()
            self.dbs.close()

    def _transaction(self) -> list[tuple[str, tuple[Any, ...]]]:
        t, r = self.table, self.rng
        out: list[tuple[str, tuple[Any, ...]]] = []
        for _ in range(3):
            if len(self.live) < 20 or r.random() < 0.4:
                key = (r.choice(ENTITIES), f"N{self.next_id:05d}")
                self.next_id += 1
                self.live.append(key)
                out.append((f"INSERT INTO {t} VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}})",
                            (*key, f"new{self.next_id}", Decimal(self.next_id) / 100, "blue")))
            elif r.random() < 0.2:
                key = self.live.pop(r.randrange(len(self.live)))
                out.append((f'DELETE FROM {t} WHERE "DATAAREAID" = {{p}} AND "ITEMID" = {{p}}', key))
            else:
                key = r.choice(self.live)
                out.append((f'UPDATE {t} SET "NAME" = {{p}}, "PRICE" = {{p}}, "COLOR" = {{p}} '
                            f'WHERE "DATAAREAID" = {{p}} AND "ITEMID" = {{p}}',
                            (f"u{r.randrange(1000)}", Decimal(r.randrange(10000)) / 100, r.choice(["red", "green"]),
                             *key)))
        return out

    def pause(self) -> None:
        self.running.clear()
        self.idle.wait(30)

    def resume(self) -> None:
        self.running.set()


def _channel_value(dbs: Databases, dsn: str, table: str, column: str, where: str) -> list[Any]:
    d, conn = dbs.dialect, dbs.conn(dsn)
    with d.transaction(conn):
        cur = conn.cursor()
        cur.execute(f"SELECT {d.quote_ident(column)} FROM {d.qualified('ax', table)} WHERE {where}")
        return [r[0] for r in cur.fetchall()]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_download_side_topology_changes_under_load(dialect: str, tmp_path: Path, kafka: str,
                                                   request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("postgres_server") if dialect == "postgresql" else None
    dsns = {n: database(dialect, tmp_path, n, server) for n in ("hq", "c1", "c2")}
    path = tmp_path / "topology.yaml"
    base = {"bootstrap": kafka, "prefix": f"chg{uuid.uuid4().hex[:8]}", "dialect": dialect, **dsns}

    revisions = iter(range(1, 100))

    def write(version: dict[str, str]) -> None:
        """``cdx topology apply`` of ``version`` (each revision in a file of its own, as an operator edits)."""
        staged = tmp_path / f"topology-r{next(revisions)}.yaml"
        staged.write_text(TOPOLOGY.format(**base, **version))
        cli(group, "topology", "apply", str(staged))
        path.write_text(staged.read_text())  # what converged() compares with

    path.write_text(TOPOLOGY.format(**base, **V1))
    dbs = Databases(dialect)
    d = dbs.dialect
    hq = dbs.conn(dsns["hq"])
    with d.transaction(hq):
        d.ensure_schema(hq, "dbo")
        d.create_table(hq, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
        d.create_table(hq, "dbo", "TERMS", TERMS, ["ID"])
    items, terms = d.qualified("dbo", "ITEMS"), d.qualified("dbo", "TERMS")
    dbs.run(dsns["hq"], *[(f"INSERT INTO {items} VALUES ({{p}}, {{p}}, {{p}}, {{p}}, {{p}})",
                           (le, f"I{i:03d}", f"n{i}", Decimal(i) + Decimal("0.25"), f"c{i}"))
                          for le in ENTITIES for i in range(UNTOUCHED)],
            *[(f"INSERT INTO {terms} VALUES ({{p}}, {{p}}, {{p}})", (i, f"t{i}", i % 4)) for i in range(12)])
    group = pipeline(tmp_path, path)
    writer = Writer(dialect, dsns["hq"], items)

    def converged() -> str | None:
        topo = load_topology(path)
        for owner in ("c1", "c2"):
            report = verify_channel(hq, d, dbs.conn(dsns[owner]), d, topo, owner)
            if not report.ok:
                return f"{owner}: {report.summary()[:600]}"
        return None

    def check(what: str) -> None:
        writer.pause()
        assert writer.error is None, writer.error
        wait_for(converged, group, 180, what)
        writer.resume()

    try:
        write(V1)  # the first revision: change tracking on every table, channel tables, published
        for name, args in (("capture", ["capture"]), ("router", ["route", "--datadir", str(tmp_path / "router")]),
                           ("sink", ["sink"])):
            group.start(name, args)
        writer.start()
        check("v1 routed")

        write(V2)  # PRICE (same name) and COLOR as ITEMCOLOR: backfilled from the table topic
        check("new columns backfilled")
        usrt = "\"DATAAREAID\" = 'usrt' AND \"ITEMID\" = 'I003'"
        assert _channel_value(dbs, dsns["c1"], "ITEMS", "ITEMCOLOR", usrt) == ["c3"]

        write(V3)  # NAME removed: the column stays with its values, no longer written
        check("removed field")
        assert _channel_value(dbs, dsns["c1"], "ITEMS", "NAME", usrt) == ["n3"]

        write(V4)  # g1 gains frrt, g2 loses frrt and gains jmrt
        check("rows moved between channels")
        assert _channel_value(dbs, dsns["c2"], "ITEMS", "ITEMID", "\"DATAAREAID\" = 'frrt'") == []

        write(V5)  # a new subjob on a table with rows: tracking (TERMS only), capture snapshots it, routed, created
        check("new subjob routed")

        write(V6)  # a channel filter on Terms: the sinks reload and resync, the router re-routes Terms
        check("channel filter added")
        assert sorted(_channel_value(dbs, dsns["c2"], "TERMS", "ID", "1 = 1")) == [2, 6, 10]

        write(V7)  # c1's filter attribute: only c1 re-evaluates its rows
        writer.stop_event.set()
        writer.join(30)
        assert writer.error is None, writer.error
        wait_for(converged, group, 180, "channel attribute changed")
        assert sorted(_channel_value(dbs, dsns["c1"], "TERMS", "ID", "1 = 1")) == [3, 7, 11]
        for owner in ("c1", "c2"):  # nothing applied twice: no batch met a record it had applied already
            conn = dbs.conn(dsns[owner])
            with d.transaction(conn):
                history = sessions.recent(conn, d, owner, limit=1_000_000)
            assert history and sum(x.duplicates for x in history if x.kind == sessions.BATCH) == 0, owner
            assert any(x.kind == sessions.RESYNC and "row filter changed" in (x.detail or "") for x in history)
    finally:
        writer.stop_event.set()
        group.stop_all()
    dbs.close()
