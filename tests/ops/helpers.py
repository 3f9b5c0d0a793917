"""Helpers of the operations-control tests: a topology with a download subjob (INVENTTABLE, job 1040) and the
sample's upload subjobs, the real roles as ``cdx`` processes, HQ writers and a selling register."""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from cdx.demo.processes import ProcessGroup
from cdx.dialects import connect, get_dialect
from cdx.topology import Topology, load_topology
from cdx.verify import checksum, normalise
from tests.pipeline.helpers import pipeline
from tests.upload.helpers import create_databases, make_topology, sell, topology_path

ITEM_FIELDS = ["ITEMID", "PRODUCT", "NAMEALIAS", "ITEMTYPE", "PRIMARYVENDORID", "RECID"]

DOWNLOAD = """  - id: InventTable
    hq_table: dbo.INVENTTABLE
    fields: [ITEMID, PRODUCT, NAMEALIAS, ITEMTYPE, PRIMARYVENDORID, RECID]
    scheduled_by: [1040]{offline}
"""


def ops_topology(tmp: Path, kafka: str, hq_dsn: str, *, schedule: str | None = None, timezone: str = "UTC",
                 registers: list[str] | None = None, item_offline: bool | None = None,
                 upload_offline: bool | None = None, lines_offline: bool | None = None,
                 channel_dsn: str | None = None) -> Topology:
    """Channel ``s1`` (SQLite unless ``channel_dsn``; offline ``registers``) receiving INVENTTABLE by
    schedule ``DL`` (``schedule``) and uploading sales by schedule ``P-0001``."""
    base = make_topology(tmp, kafka, hq_dsn, ["s1"], registers={"s1": registers or []},
                         channel_dsns={"s1": channel_dsn} if channel_dsn else None)
    path = topology_path(base)
    text = path.read_text()
    up_off = "" if upload_offline is None else f", offline: {str(upload_offline).lower()}"
    text = text.replace("  - {id: P-0001, direction: upload}",
                        f"  - {{id: 1040, direction: download}}\n  - {{id: P-0001, direction: upload{up_off}}}")
    if lines_offline is not None:
        text = text.replace("  - id: RetailTransactionSalesTrans\n    direction: upload\n",
                            "  - id: RetailTransactionSalesTrans\n    direction: upload\n"
                            f"    offline: {str(lines_offline).lower()}\n")
    offline = "" if item_offline is None else f"\n    offline: {str(item_offline).lower()}"
    text = text.replace("subjobs:\n", "subjobs:\n" + DOWNLOAD.format(offline=offline), 1)
    sched = "" if schedule is None else f", schedule: {json.dumps(schedule)}, timezone: {timezone}"
    text = text.rstrip() + f"\n  - {{id: DL, direction: download, jobs: [1040], channel_data_groups: [g1]{sched}}}\n"
    path.write_text(text)
    topo = load_topology(path, environ={})
    topo.__dict__["_path"] = path
    return topo


def prepare(topo: Topology) -> None:
    """HQ and channel tables (upload and INVENTTABLE at HQ)."""
    create_databases(topo)


class HqWriter:
    """Inserts and updates INVENTTABLE rows at HQ (legal entity usrt) until stopped."""

    def __init__(self, topo: Topology, seed: int = 1) -> None:
        self.topo = topo
        self.rng = random.Random(seed)
        self.n = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def write(self, count: int) -> None:
        d = get_dialect(self.topo.hq.dialect.value)
        conn = connect(self.topo.hq.dialect.value, self.topo.hq.dsn)
        q, p = d.quote_ident, d.placeholder
        table = d.qualified("dbo", "INVENTTABLE")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cols = ["DATAAREAID", "ITEMID", "PRODUCT", "NAMEALIAS", "ITEMTYPE", "PRIMARYVENDORID", "RECID", "NETWEIGHT",
                "MODIFIEDDATETIME", "MODIFIEDBY", "CREATEDDATETIME", "CREATEDBY"]
        try:
            with d.transaction(conn):
                for _ in range(count):
                    if self.n and self.rng.random() < 0.4:
                        item = f"I{self.rng.randrange(self.n):05d}"
                        conn.execute(f"UPDATE {table} SET {q('NAMEALIAS')} = {p}, {q('MODIFIEDDATETIME')} = {p}"
                                     f" WHERE {q('DATAAREAID')} = {p} AND {q('ITEMID')} = {p}",
                                     (f"n{self.rng.randrange(10**6)}", d.encode(now), "usrt", item))
                        continue
                    values = ["usrt", f"I{self.n:05d}", 1000 + self.n, f"item {self.n}", 0, None, 5_000_000 + self.n,
                              Decimal("0.5"), now, "t", now, "t"]
                    conn.execute(f"INSERT INTO {table} ({d.columns_sql(cols)}) VALUES ({', '.join([p] * len(cols))})",
                                 tuple(d.encode(v) for v in values))
                    self.n += 1
        finally:
            conn.close()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.write(self.rng.randint(1, 5))
            time.sleep(0.1)

    def start(self) -> HqWriter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)


class Register:
    """The channel's POS register: sells until stopped."""

    def __init__(self, topo: Topology, owner: str = "s1", seed: int = 7) -> None:
        self.topo, self.owner, self.seed = topo, owner, seed
        self.sold = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            sell(self.topo, self.owner, 2, seed=self.seed * 100_000 + self.sold)
            self.sold += 2
            time.sleep(0.15)

    def start(self) -> Register:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)


def item_rows(dialect: str, dsn: str, schema: str, where_le: bool) -> dict[Any, tuple[Any, ...]]:
    """INVENTTABLE rows (``ITEM_FIELDS``) by ITEMID, normalised; empty when the table does not exist."""
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    try:
        if not d.table_exists(conn, schema, "INVENTTABLE"):
            return {}
        where = f" WHERE {d.quote_ident('DATAAREAID')} = {d.placeholder}" if where_le else ""
        cur = conn.cursor()
        cur.execute(f"SELECT {d.columns_sql(ITEM_FIELDS)} FROM {d.qualified(schema, 'INVENTTABLE')}{where}",
                    ("usrt",) if where_le else ())
        return {r[0]: tuple(normalise(v) for v in r) for r in cur.fetchall()}
    finally:
        conn.rollback()
        conn.close()


def hq_items(topo: Topology) -> dict[Any, tuple[Any, ...]]:
    return item_rows(topo.hq.dialect.value, topo.hq.dsn, "dbo", True)


def channel_items(topo: Topology, owner: str = "s1") -> dict[Any, tuple[Any, ...]]:
    info = next(i for i in topo.databases() if i.owner_id == owner)
    return item_rows(info.database.dialect.value, info.database.dsn, "ax", False)


def digest(rows: dict[Any, tuple[Any, ...]]) -> tuple[int, str]:
    return len(rows), checksum(rows)


def start_roles(group: ProcessGroup, *roles: str) -> None:
    """Any of capture, router, sink, upload, hq-sink."""
    args = {"capture": ["capture"], "router": ["route"], "sink": ["sink"],
            "upload": ["channel", "upload", "--poll-interval", "0.1", "--gap-grace", "0.5"],
            "hq-sink": ["hq", "upload-sink", "--instance-id", "ops-sink", "--batch-size", "500"]}
    for r in roles:
        group.start(r, args[r])


def cdx(group: ProcessGroup, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "cdx.cli.main", *args], env=group.env, capture_output=True,
                          text=True, timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"cdx {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return done


def status(group: ProcessGroup, owner: str = "s1") -> dict[str, Any]:
    doc = json.loads(cdx(group, "status", "--json", "--no-uploads").stdout)
    return next(d for d in doc["databases"] if d["owner_id"] == owner)


def roles(tmp: Path, topo: Topology, **env: str) -> ProcessGroup:
    group = pipeline(tmp, topology_path(topo))
    group.env.update(env)
    return group
