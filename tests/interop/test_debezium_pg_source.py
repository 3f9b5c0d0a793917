"""cdx routes and sinks what Debezium's PostgreSQL source (3.6.0.Final, pgoutput, JsonConverter) writes.

A team that already runs Debezium capture names its table topic as the subjob's ``source_topic``;
cdx's router and channel sink (``kafka.encoding: connect-json``) take it from there. After the
snapshot, updates (NULLs included), deletes and a re-insert, the channel table equals HQ's, and
``cdx topic tail`` decodes Debezium's records.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from cdx.infra.postgres import launcher
from tests.interop.common import CREATE_ITEMS, change_items, insert_items, read_rows
from tests.interop.harness import ROOT, Connect, logical_postgres, spawn_cdx, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.interop]

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, encoding: connect-json}}
hq: {{name: hq, dialect: postgresql, dsn: "{hq}"}}
jobs:
  - {{id: "1040", direction: download}}
subjobs:
  - id: Items
    hq_table: public.ITEMS
    source_topic: {source_topic}
    fields: [ITEMID, NAME, PRICE, QTY, UPDATED, AVAILABLE]
    scheduled_by: ["1040"]
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: c1, database: {{dialect: postgresql, dsn: "{channel}"}}}}
distribution_schedules:
  - {{id: S1, direction: download, jobs: ["1040"], channel_data_groups: [g1]}}
"""


def pg_source(dsn: str, prefix: str, slot: str) -> dict[str, object]:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return {"connector.class": "io.debezium.connector.postgresql.PostgresConnector", "tasks.max": 1,
            "database.hostname": "127.0.0.1", "database.port": info["port"], "database.user": "postgres",
            "database.password": "unused", "database.dbname": info["dbname"], "topic.prefix": prefix,
            "plugin.name": "pgoutput", "slot.name": slot, "slot.drop.on.stop": "true",
            "publication.name": slot, "publication.autocreate.mode": "filtered",
            "table.include.list": "public.ITEMS", "decimal.handling.mode": "precise",
            "topic.creation.default.replication.factor": 1, "topic.creation.default.partitions": 1,
            "max.batch.size": 4096, "max.queue.size": 16384}


def test_cdx_routes_and_sinks_debezium_postgres_topics(kafka: str, postgres_server: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    hq = launcher.create_database(logical_postgres(), f"ix_src_{run}")
    channel = launcher.create_database(postgres_server, f"ix_ch_{run}")
    with psycopg.connect(hq, autocommit=True) as conn:
        conn.execute(CREATE_ITEMS.format(table='public."ITEMS"'))
    items = sql.Identifier("public", "ITEMS")
    insert_items(hq, items, 0, 60)
    dbz_prefix, prefix = f"dbz{run}", f"ix{run}"
    source_topic = f"{dbz_prefix}.public.ITEMS"
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=prefix, hq=hq, channel=channel,
                                    source_topic=source_topic))
    connect = Connect(tmp_path / "connect", kafka, {"pg-source": pg_source(hq, dbz_prefix, f"ix_{run}")})
    procs: list[subprocess.Popen] = []
    try:
        wait_until(lambda: "starting streaming" in connect.tail(400).casefold(), 240, "Debezium snapshot",
                   connect.tail, alive=connect.alive)
        change_items(hq, items)
        procs = [spawn_cdx(tmp_path, "router", "route", "-t", str(path), "--datadir", str(tmp_path / "router")),
                 spawn_cdx(tmp_path, "sink", "sink", "-t", str(path))]
        want = read_rows(hq, "public", "ITEMS")

        def equal() -> bool:
            try:
                return read_rows(channel, "ax", "ITEMS") == want
            except AssertionError:
                return False

        def why() -> str:
            logs = "\n".join(f"--- {n}: {(tmp_path / f'{n}.log').read_text()[-2000:]}" for n in ("router", "sink"))
            try:
                got = read_rows(channel, "ax", "ITEMS")
                diff = [(k, want.get(k), got.get(k)) for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
            except AssertionError as e:
                diff = [str(e)]
            return f"{connect.tail(30)}\n{logs}\ndifferences ({len(diff)}): {diff[:5]}"

        wait_until(equal, 300, "channel equals HQ", why, alive=connect.alive)
        assert len(want) == 51
        tail = subprocess.run([sys.executable, "-m", "cdx.cli.main", "topic", "tail", source_topic, "-t", str(path),
                               "--from-beginning", "--json", "--key", "ITEMID=I0002", "--idle-exit", "5"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        shown = [json.loads(line) for line in tail.stdout.splitlines()]
        assert tail.returncode == 0 and shown, tail.stderr
        assert {r["encoding"] for r in shown} == {"connect-json"}
        assert shown[-1]["value"]["op"] == "u" and shown[-1]["value"]["after"]["NAME"] == "renamed 2"
        assert shown[-1]["value"]["source"]["connector"] == "postgresql"
    finally:
        for p in procs:
            stop(p)
        connect.stop()
