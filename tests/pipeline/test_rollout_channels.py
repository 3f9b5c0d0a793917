"""Channel-set changes rolled out with ``cdx topology apply`` while the whole pipeline runs under load:
real ``cdx capture``, ``route``, ``sink``, ``channel upload``, ``channel offline-sync`` and ``hq
upload-sink`` processes, started once and never restarted, on SQLite and PostgreSQL.

r1: channels c1, c2 upload their headers. r2: a new channel c3 with an offline register c3-r1 (its
database bootstraps; upload, offline sync and the HQ upload sink pick it up). r3: a new upload
subjob, the sales lines (upload and HQ upload sink pick it up; lines sold before it are uploaded
too), and a new download subjob on a table HQ already fills (apply tracks it, capture snapshots
it, the router restarts itself for the new source topic, the sinks create and fill it). r4: c2
removed (its sink and upload stop; nothing else is disturbed). HQ items change and
every channel sells throughout. At the end every channel and register equals HQ's scoped view, HQ
holds every sale once, and neither the download nor the upload sessions applied anything twice."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdx.connectors.sink import sessions as download_sessions
from cdx.connectors.upload import sessions as upload_sessions
from cdx.demo.retail_schema import create_channel_upload_tables, create_hq_tables
from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.topology import Topology, load_topology
from cdx.topology.rollout import rollout
from cdx.verify import verify_channel
from tests.pipeline.helpers import Databases, cli, database, pipeline, wait_for
from tests.upload.helpers import (
    EXT_FIELDS,
    HEADER_FIELDS,
    LINE_FIELDS,
    RECIDS,
    assert_channel_at_hq,
    channel_rows,
    hq_count,
    make_topology,
    sell,
    upload_records,
)

pytestmark = [pytest.mark.integration, pytest.mark.rollout_long]

S = LogicalType.STRING
ITEMS = [ColumnInfo("DATAAREAID", S, nullable=False, length=4), ColumnInfo("ITEMID", S, nullable=False, length=20),
         ColumnInfo("NAME", S, length=60)]
NOTES = [ColumnInfo("ID", LogicalType.INT64, nullable=False), ColumnInfo("TEXT", S, length=40)]
ROLES = {"capture", "router", "sink", "upload", "offline-sync", "hq-upload-sink"}


def _yaml(kafka: str, prefix: str, dialect: str, dsns: dict[str, str], tmp: Path, channels: list[str],
          lines: bool) -> str:
    f = ", ".join
    out = [f"""kafka: {{bootstrap_servers: "{kafka}", topic_prefix: {prefix}, default_partitions: 2}}
hq: {{name: hq, dialect: {dialect}, dsn: "{dsns['hq']}"}}
jobs:
  - {{id: J1, direction: download}}
  - {{id: P-0001, direction: upload}}
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: [ITEMID, NAME], scheduled_by: [J1]}}
  - id: RetailTransactionTable
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONTABLE
    fields: [{f(HEADER_FIELDS)}]
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]
    extension:
      table: ext.CONTOSORETAILTRANSACTIONTABLE
      key: [CHANNEL, STORE, TERMINAL, TRANSACTIONID]
      fields: [{f(EXT_FIELDS)}]"""]
    if lines:
        out.append("""  - {id: Notes, hq_table: dbo.NOTES, fields: [ID, TEXT], scheduled_by: [J1]}""")
        out.append(f"""  - id: RetailTransactionSalesTrans
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONSALESTRANS
    fields: [{f(LINE_FIELDS)}]
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]""")
    out.append("""channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:""")
    for c in channels:
        out.append(f"""      - id: {c}
        database: {{dialect: {dialect}, dsn: "{dsns[c]}"}}
        attributes: {{recid: {RECIDS + int(c[1:])}}}""")
        if c == "c3":
            out.append(f'        offline_registers: [{{id: c3-r1, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/c3-r1.db"}}}}]')
    out.append("""distribution_schedules:
  - {id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}
  - {id: P-0001, direction: upload, jobs: [P-0001], channel_data_groups: [g1]}
""")
    return "\n".join(out)


class Load:
    """HQ item changes and sales in every selling database, each in a thread, until ``stop``
    (the HQ writer has connections of its own, opened in its thread)."""

    def __init__(self, dialect: str, hq_dsn: str) -> None:
        self.dbs, self.hq_dsn = Databases(dialect), hq_dsn
        self.stops: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def _loop(self, stop: threading.Event, step: Any) -> None:
        n = 0
        while not stop.is_set():
            try:
                step(n)
            except BaseException as exc:  # reported by check(); the test fails with it
                self.errors.append(exc)
                return
            n += 1
            stop.wait(0.05)

    def start(self, name: str, step: Any) -> None:
        stop = self.stops[name] = threading.Event()
        t = threading.Thread(target=self._loop, args=(stop, step), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def sell(self, topo: Topology, owner: str) -> None:
        rng = random.Random(owner)
        self.start(owner, lambda n: sell(topo, owner, rng.randint(1, 3), seed=hash((owner, n)) & 0xFFFFFF))

    def items(self, names: dict[str, str]) -> None:
        d = self.dbs.dialect
        rng = random.Random(7)

        def step(n: int) -> None:
            le = "usrt" if n % 5 else "frrt"
            if n > 20 and rng.random() < 0.4:
                q = d.quote_ident
                sql = f"UPDATE {names['items']} SET {q('NAME')} = {{p}} WHERE {q('ITEMID')} = {{p}}"
                self.dbs.run(self.hq_dsn, (sql, (f"v{n}", f"I{rng.randrange(n)}")))
            else:
                self.dbs.run(self.hq_dsn, (f"INSERT INTO {names['items']} VALUES ({{p}}, {{p}}, {{p}})",
                                           (le, f"I{n}", f"n{n}")),
                             (f"INSERT INTO {names['notes']} VALUES ({{p}}, {{p}})", (n, f"note {n}")))
        self.start("items", step)

    def stop(self, name: str) -> None:
        self.stops[name].set()

    def stop_all(self) -> None:
        for e in self.stops.values():
            e.set()
        for t in self.threads:
            t.join(30)

    def check(self) -> str | None:
        return f"load failed: {self.errors[0]!r}" if self.errors else None


def _rolled_out(topo: Topology, number: int) -> str | None:
    state = rollout(topo)
    if state.published is None or state.published.number != number:
        return f"r{number} not published"
    roles = {r.role for r in state.live()}
    want = ROLES if number > 1 else ROLES - {"offline-sync"}  # no register to sync before r2: no instance
    if not state.complete or roles != want:
        return f"{state.summary()}; roles {sorted(roles)}; " + "; ".join(
            f"{r.role}/{r.instance}: {r.revision} {r.state} {r.detail}" for r in state.behind())
    return None


def _items_in(dbs: Databases, dsn: str) -> int:
    d, conn = dbs.dialect, dbs.conn(dsn)
    with d.transaction(conn):
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {d.qualified('ax', 'ITEMS')}")
        return int(cur.fetchone()[0])


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_channels_and_upload_subjobs_roll_out_under_load(dialect: str, tmp_path: Path, kafka: str,
                                                         request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("postgres_server") if dialect == "postgresql" else None
    dsns = {n: database(dialect, tmp_path, n, server) for n in ("hq", "c1", "c2", "c3")}
    prefix = f"ro{uuid.uuid4().hex[:8]}"
    versions: dict[int, tuple[Path, Topology]] = {}
    for n, (channels, lines) in {1: (["c1", "c2"], False), 2: (["c1", "c2", "c3"], False),
                                 3: (["c1", "c2", "c3"], True), 4: (["c1", "c3"], True)}.items():
        path = tmp_path / f"v{n}.yaml"
        path.write_text(_yaml(kafka, prefix, dialect, dsns, tmp_path, channels, lines))
        versions[n] = (path, load_topology(path))
    full = versions[3][1]
    dbs = Databases(dialect)
    d = dbs.dialect
    hq = dbs.conn(dsns["hq"])
    (tmp_path / "schema").mkdir()
    retail = make_topology(tmp_path / "schema", kafka, dsns["hq"], ["c1"])  # the demo's upload tables
    create_hq_tables(hq, d, retail)
    with d.transaction(hq):
        d.create_table(hq, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
        d.create_table(hq, "dbo", "NOTES", NOTES, ["ID"])
    for info in full.databases():  # the POS tables exist in every store and register
        conn = connect(info.database.dialect.value, info.database.dsn)
        create_channel_upload_tables(conn, get_dialect(info.database.dialect.value), retail)
        conn.close()

    group = pipeline(tmp_path, versions[1][0])
    load = Load(dialect, dsns["hq"])
    try:
        cli(group, "topology", "apply", str(versions[1][0]))
        for name, args in (("capture", ["capture", "--poll-interval", "0.1"]),
                           ("router", ["route", "--datadir", str(tmp_path / "router"), "--reload-interval", "0.5"]),
                           ("sink", ["sink"]), ("upload", ["channel", "upload", "--poll-interval", "0.1"]),
                           ("offline-sync", ["channel", "offline-sync", "--poll-interval", "0.2"]),
                           ("hq-upload-sink", ["hq", "upload-sink", "--instance-id", f"{prefix}-sink"])):
            group.start(name, args)
        load.items({"items": d.qualified("dbo", "ITEMS"), "notes": d.qualified("dbo", "NOTES")})
        for owner in ("c1", "c2"):
            load.sell(versions[1][1], owner)

        def settled(n: int) -> Any:
            return lambda: load.check() or _rolled_out(versions[n][1], n)

        wait_for(settled(1), group, 120, "every role runs r1")
        for n in (2, 3):
            cli(group, "topology", "apply", str(versions[n][0]))
            if n == 2:
                for owner in ("c3", "c3-r1"):
                    load.sell(versions[2][1], owner)
            wait_for(settled(n), group, 120, f"every role runs r{n}")

        load.stop("c2")  # the store closes: its last sales reach HQ, then it leaves the topology
        wait_for(lambda: _uploaded(versions[3][1], "c2"), group, 120, "c2's sales at HQ")
        cli(group, "topology", "apply", str(versions[4][0]))
        wait_for(settled(4), group, 120, "every role runs r4")
        shown = subprocess.run([sys.executable, "-m", "cdx.cli.main", "status", "--json", "--no-uploads", "-t",
                                str(versions[4][0])], env=group.env, capture_output=True, text=True, timeout=120)
        state = json.loads(shown.stdout)["rollout"]
        assert state["complete"] and state["published"]["revision"] == "r4", state
        assert {r["instance"] for r in state["roles"] if r["role"] == "sink"} == {"c1", "c3", "c3-r1"}
        c2_items = _items_in(dbs, dsns["c2"])
        time.sleep(3)  # HQ items keep changing: c2 no longer follows them
        load.stop_all()
        assert load.check() is None
        final = versions[4][1]

        def converged() -> str | None:
            for owner in ("c1", "c3", "c3-r1"):
                report = verify_channel(hq, d, dbs.conn(dsns[owner]) if owner in dsns
                                        else connect("sqlite", f"sqlite:///{tmp_path}/c3-r1.db"),
                                        d if owner in dsns else get_dialect("sqlite"), final, owner)
                if not report.ok:
                    return f"{owner}: {report.summary()}"
            register = channel_rows(final, "c3-r1")
            synced = channel_rows(final, "c3")
            if any(register[t].keys() - synced[t].keys() for t in register):
                return "c3-r1's sales not all in c3 yet"
            return _uploaded(final, "c1") or _uploaded(final, "c3")

        wait_for(converged, group, 180, "channels equal HQ, HQ holds every sale")
        assert _items_in(dbs, dsns["c2"]) == c2_items
    finally:
        load.stop_all()
        group.stop_all()
    _assert_once(full, final, dbs, dsns, tmp_path)
    dbs.close()


def _uploaded(topo: Topology, channel: str) -> str | None:
    try:
        assert_channel_at_hq(topo, channel)
    except AssertionError as exc:
        return str(exc)[:300]
    return None


def _assert_once(full: Topology, final: Topology, dbs: Databases, dsns: dict[str, str], tmp: Path) -> None:
    """HQ holds every sale once; no session applied anything twice; each row published once."""
    want = sum(len(r) for c in ("c1", "c3") for r in channel_rows(final, c).values())
    want += sum(len(r) for r in channel_rows(full, "c2").values())
    assert hq_count(final) == want
    for c in ("c1", "c2", "c3"):
        keys = [(k["table"], k["counter"]) for k, _, _ in upload_records(full, c)]
        assert len(keys) == len(set(keys)), f"{c}: a row was published twice"
    hq = dbs.conn(dsns["hq"])
    with dbs.dialect.transaction(hq):
        totals = upload_sessions.summary(hq, dbs.dialect)
    assert sum(s.rows_inserted for s in totals) == want
    assert sum(s.rows_duplicate for s in totals) == 0, "an upload batch was applied twice"
    for owner in ("c1", "c3", "c3-r1"):
        conn = dbs.conn(dsns[owner]) if owner in dsns else connect("sqlite", f"sqlite:///{tmp}/c3-r1.db")
        d = dbs.dialect if owner in dsns else get_dialect("sqlite")
        with d.transaction(conn):
            history = download_sessions.recent(conn, d, owner, 100_000)
        assert history and sum(s.duplicates for s in history) == 0, f"{owner}: a change was applied twice"
