"""Upload limits (issue 13): PostgreSQL gaps held by a transaction without an xid, gaps given up
after the timeout as dead letters shown by ``cdx status`` until acknowledged, counters that go
backwards, rows over the message limit. Real broker, real PostgreSQL and SQLite channel databases."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdx.cli import status_cmd
from cdx.cli.main import app
from cdx.connectors.sink.letters import read_letters
from cdx.connectors.upload.uploader import ChannelUploader, UploadConnector, UploadOptions
from cdx.demo.retail_schema import CHANNEL_UPLOAD_TABLES, insert_sql
from cdx.dialects import connect
from cdx.errors import ConfigError
from cdx.kafka.config import client_config
from cdx.topics import dlq_topic
from tests.upload.helpers import (
    PG,
    create_databases,
    fresh_pg,
    make_topology,
    sell,
    topology_path,
    upload_records,
)

pytestmark = pytest.mark.integration

HEADER = CHANNEL_UPLOAD_TABLES["RETAILTRANSACTIONTABLE"]
HEADER_TABLE = "ax.RETAILTRANSACTIONTABLE"
COLUMNS = ["DATAAREAID", "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID", "TYPE", "CUSTACCOUNT", "STAFF", "CURRENCY",
           "GROSSAMOUNT", "NETAMOUNT", "TRANSDATE", "TRANSTIME", "CREATEDDATETIME"]
SEQUENCE = "SELECT nextval(pg_get_serial_sequence('ax.\"RETAILTRANSACTIONTABLE\"', 'REPLICATIONCOUNTERFROMORIGIN'))"
status_app = typer.Typer()
status_app.command()(status_cmd.status)


def _values(txn: str) -> list:
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    return ["usrt", 5637144576, "pg01", "pg01-pos-01", txn, 2, None, "000001", "USD", Decimal("10.00"),
            Decimal("9.00"), now.date(), 11045, now]


def insert_header(conn, txn: str, counter: int | None = None) -> int:
    """Insert one header (no commit), with the given counter or the database's next; returns the counter."""
    if counter is None:
        conn.execute(insert_sql(PG, "ax", HEADER, COLUMNS), _values(txn))
    else:
        conn.execute(insert_sql(PG, "ax", HEADER, [*COLUMNS, "REPLICATIONCOUNTERFROMORIGIN"]),
                     [*_values(txn), counter])
    return int(conn.execute('SELECT "REPLICATIONCOUNTERFROMORIGIN" FROM ax."RETAILTRANSACTIONTABLE"'
                            ' WHERE "TRANSACTIONID" = %s', (txn,)).fetchone()[0])


def _uploader(topo, **options) -> ChannelUploader:
    connector = UploadConnector(topo, options=UploadOptions(**options))
    connector.setup()
    up = connector.uploaders[0]
    up.target.open()
    up.source.open()
    return up


def _table(up: ChannelUploader, name: str = HEADER_TABLE):
    return next(t for t in up.tables if str(t.source.table) == name)


def _pg_channel(tmp_path: Path, kafka: str, postgres_server: str):
    channel_dsn = fresh_pg(postgres_server, "lim")
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["pg01"], channel_dsns={"pg01": channel_dsn})
    create_databases(topo)
    return topo, channel_dsn


def _status(topo) -> dict:
    res = CliRunner().invoke(status_app, ["--topology", str(topology_path(topo)), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _upload_errors(topo, table: str = HEADER_TABLE) -> list[str]:
    return next(u for u in _status(topo)["uploads"] if u["table"] == table)["errors"]


# ------------------------------------------------------------------------- 9. gap without xid
def test_gap_held_by_a_transaction_without_a_transaction_id_stays_open(tmp_path, kafka, postgres_server) -> None:
    topo, dsn = _pg_channel(tmp_path, kafka, postgres_server)
    up = _uploader(topo, gap_grace=0.0, gap_timeout=3600)
    header = _table(up)
    a, b = connect("postgresql", dsn), connect("postgresql", dsn)
    try:
        insert_header(b, "Z")  # the sequence logs values ahead: the next nextval() needs no WAL, so no xid
        b.commit()
        ca = int(a.execute(SEQUENCE).fetchone()[0])  # A holds a counter but has written nothing
        assert a.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
        cb = insert_header(b, "B")
        b.commit()
        assert cb == ca + 1
        up.poll_once()
        assert [(g.start, g.end) for g in header.position.gaps] == [(ca, ca)]
        for _ in range(3):  # the snapshot's xmin has passed A's (absent) xid: no proof that A ended
            time.sleep(0.05)
            up.poll_once()
        assert [(g.start, g.end) for g in header.position.gaps] == [(ca, ca)]
        insert_header(a, "A", ca)  # A uses its counter and commits, late
        a.commit()
        up.poll_once()
        assert not header.position.gaps and header.position.skipped == 0
        cc = int(a.execute(SEQUENCE).fetchone()[0])  # taken and rolled back: the gap closes once A ended
        a.rollback()
        cd = insert_header(b, "D")
        b.commit()
        up.poll_once()
        up.poll_once()
        assert not header.position.gaps and header.position.skipped == 1 and cd == cc + 1
    finally:
        a.close()
        b.close()
        up.close()
    published = [env["after"]["TRANSACTIONID"] for k, env, _ in upload_records(topo, "pg01")
                 if k["table"] == HEADER_TABLE]
    assert published == ["Z", "B", "A", "D"]


# ------------------------------------------------------------------- 10. gap timeout letters
def test_gap_given_up_after_the_timeout_is_a_dead_letter_until_acknowledged(tmp_path, kafka,
                                                                             postgres_server) -> None:
    topo, dsn = _pg_channel(tmp_path, kafka, postgres_server)
    up = _uploader(topo, gap_grace=0.0, gap_timeout=1.0)
    header = _table(up)
    a, b = connect("postgresql", dsn), connect("postgresql", dsn)
    try:
        ca = insert_header(a, "A")  # stays open past the timeout
        cb = insert_header(b, "B")
        b.commit()
        up.poll_once()
        time.sleep(1.2)
        up.poll_once()
        assert not header.position.gaps and header.position.skipped == 1 and cb == ca + 1
    finally:
        a.rollback()
        a.close()
        b.close()
        up.close()
    cfg = client_config(topo.kafka.bootstrap_servers)
    letters = [x for x in read_letters(cfg, dlq_topic(topo.kafka.topic_prefix)) if x.error_kind == "gap"]
    assert len(letters) == 1
    letter = letters[0]
    assert letter.channel == "pg01" and letter.table == HEADER_TABLE and letter.component == "upload"
    assert letter.key == {"counter": ca} and letter.extra["row"] == {"first_counter": ca, "last_counter": ca,
                                                                     "counters": 1}
    assert f"counters {ca}..{ca}" in letter.error and "--gap-timeout" in letter.error
    errors = _upload_errors(topo)
    assert len(errors) == 1 and f"cdx dlq ack --offset {letter.dlq_offset}" in errors[0]
    res = CliRunner().invoke(app, ["dlq", "ack", "--topology", str(topology_path(topo)), "--all",
                                   "--note", "rolled back at the till"])
    assert res.exit_code == 0, res.output
    assert "1 dead letter(s) acknowledged" in res.output
    assert _upload_errors(topo) == []


# ------------------------------------------------------------------- 11. counters backwards
def _delete_top_header(topo, n: int) -> int:
    """Delete the ``n`` headers with the highest counters from the SQLite channel; returns the new MAX."""
    conn = connect("sqlite", topo.channel("s01").database.dsn)
    table = '"ax_RETAILTRANSACTIONTABLE"'
    top = [r[0] for r in conn.execute(f'SELECT "REPLICATIONCOUNTERFROMORIGIN" FROM {table}'
                                      ' ORDER BY 1 DESC LIMIT ?', (n,)).fetchall()]
    conn.executemany(f'DELETE FROM {table} WHERE "REPLICATIONCOUNTERFROMORIGIN" = ?', [(c,) for c in top])
    conn.commit()
    new_max = conn.execute(f'SELECT MAX("REPLICATIONCOUNTERFROMORIGIN") FROM {table}').fetchone()[0]
    conn.close()
    return int(new_max)


def test_counters_going_backwards_halt_the_table_until_restarted(tmp_path, kafka) -> None:
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["s01"])
    create_databases(topo)
    sell(topo, "s01", 5, seed=1)
    up = _uploader(topo)
    up.poll_once()
    header, lines = _table(up), _table(up, "ax.RETAILTRANSACTIONSALESTRANS")
    high = header.position.high
    new_max = _delete_top_header(topo, 2)  # SQLite will hand out new_max + 1 again
    up.poll_once()
    assert header.position.halted and "went backwards" in header.position.halted
    lines_before = lines.position.high
    sell(topo, "s01", 2, seed=2, terminal="s01-pos-07")  # reuses counters new_max + 1, new_max + 2
    for _ in range(2):
        up.poll_once()
    assert header.position.high == high and header.position.halted  # nothing published over old counters
    assert lines.position.high > lines_before  # the other table goes on
    up.close()
    assert any("halted" in e for e in _upload_errors(topo))
    # the halt survives a restart of the upload
    again = _uploader(topo)
    again.poll_once()
    assert _table(again).position.halted
    again.close()
    # recovery: restart at the first reused counter
    res = CliRunner().invoke(app, ["channel", "upload", "--topology", str(topology_path(topo)), "--from-counter",
                                   "3"])
    assert res.exit_code != 0 and "exactly one --channel" in res.output and "Traceback" not in res.output
    with pytest.raises(ConfigError, match="is no upload table of the channel"):  # before any database or Kafka
        UploadConnector(topo, options=UploadOptions(from_counter=new_max + 1, from_tables=["ax.NOSUCHTABLE"]))
    fixed = _uploader(topo, from_counter=new_max + 1, from_tables=[HEADER_TABLE])
    fixed.poll_once()
    fixed.poll_once()
    header = _table(fixed)
    assert not header.position.halted and header.position.high == new_max + 2
    fixed.close()
    counters = [k["counter"] for k, _env, _h in upload_records(topo, "s01") if k["table"] == HEADER_TABLE]
    assert counters == [*range(1, high + 1), new_max + 1, new_max + 2]
    assert _upload_errors(topo) == []


# ------------------------------------------------------------------------ 12. large sale rows
def _big_customer(topo, chars: int) -> str:
    conn = connect("sqlite", topo.channel("s01").database.dsn)
    value = os.urandom(chars // 2).hex()
    conn.execute('UPDATE "ax_RETAILTRANSACTIONTABLE" SET "CUSTACCOUNT" = ? WHERE "REPLICATIONCOUNTERFROMORIGIN" = 2',
                 (value,))
    conn.commit()
    conn.close()
    return value


def test_sale_row_of_a_megabyte_goes_through_with_the_default_limit(tmp_path, kafka) -> None:
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["s01"])
    create_databases(topo)
    sell(topo, "s01", 3, seed=3)
    big = _big_customer(topo, 1_200_000)
    up = _uploader(topo)
    try:
        up.poll_once()
    finally:
        up.close()
    headers = {k["counter"]: env["after"] for k, env, _ in upload_records(topo, "s01") if k["table"] == HEADER_TABLE}
    assert sorted(headers) == [1, 2, 3] and headers[2]["CUSTACCOUNT"] == big


def test_sale_row_over_the_limit_is_dead_lettered_and_the_channel_moves_on(tmp_path, kafka) -> None:
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["s01"])
    path = topology_path(topo)
    path.write_text(path.read_text().replace("default_partitions: 3", "default_partitions: 3,"
                                             " max_message_bytes: 1048576", 1))
    from cdx.topology import load_topology

    topo = load_topology(path, environ={})
    topo.__dict__["_path"] = path
    assert topo.kafka.max_message_bytes == 1024 * 1024
    create_databases(topo)
    sell(topo, "s01", 3, seed=4)
    _big_customer(topo, 2_000_000)
    up = _uploader(topo)
    try:
        up.poll_once()
        sell(topo, "s01", 1, seed=5)
        up.poll_once()
    finally:
        up.close()
    counters = [k["counter"] for k, _e, _h in upload_records(topo, "s01") if k["table"] == HEADER_TABLE]
    assert counters == [1, 3, 4]
    letters = [x for x in read_letters(client_config(topo.kafka.bootstrap_servers), dlq_topic(topo.kafka.topic_prefix))
               if x.component == "upload"]
    assert len(letters) == 1 and letters[0].table == HEADER_TABLE and letters[0].channel == "s01"
    assert letters[0].extra["counter"] == 2 and letters[0].error_kind == "oversize"
    assert "exceeds kafka.max_message_bytes" in letters[0].error
