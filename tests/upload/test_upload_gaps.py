"""Out-of-order identity commits on a PostgreSQL channel database: the row holding the lower
counter commits last and still reaches HQ (CDX's "above the largest received" rule would lose it);
a rolled-back counter becomes a permanent gap that is skipped once the database shows no
transaction can still fill it."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from cdx.connectors.upload.sink import SinkOptions, UploadSink
from cdx.connectors.upload.uploader import UploadConnector, UploadOptions
from cdx.demo.retail_schema import CHANNEL_UPLOAD_TABLES, insert_sql
from cdx.dialects import connect
from cdx.stage.loop import apply_batch
from tests.upload.helpers import PG, create_databases, fresh_pg, make_topology, upload_records, wait_until

pytestmark = pytest.mark.integration

HEADER = CHANNEL_UPLOAD_TABLES["RETAILTRANSACTIONTABLE"]
COLUMNS = ["DATAAREAID", "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID", "TYPE", "CUSTACCOUNT", "STAFF", "CURRENCY",
           "GROSSAMOUNT", "NETAMOUNT", "TRANSDATE", "TRANSTIME", "CREATEDDATETIME"]


def insert_header(conn, txn: str) -> int:
    """Insert one header (no commit); returns the counter the database gave it."""
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    values = ["usrt", 5637144576, "pg01", "pg01-pos-01", txn, 2, None, "000001", "USD", Decimal("10.00"),
              Decimal("9.00"), now.date(), 11045, now]
    conn.execute(insert_sql(PG, "ax", HEADER, COLUMNS), values)
    return int(conn.execute('SELECT "REPLICATIONCOUNTERFROMORIGIN" FROM ax."RETAILTRANSACTIONTABLE"'
                            ' WHERE "TRANSACTIONID" = %s', (txn,)).fetchone()[0])


def test_lower_counter_committing_last_is_not_lost(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    channel_dsn = fresh_pg(postgres_server, "gapch")
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", ["pg01"], channel_dsns={"pg01": channel_dsn})
    create_databases(topo)
    connector = UploadConnector(topo, options=UploadOptions(gap_grace=0.0, gap_timeout=3600))
    connector.setup()
    up = connector.uploaders[0]
    up.target.open()
    up.source.open()
    header = next(t for t in up.tables if t.subjob.id == "RetailTransactionTable")

    a, b = connect("postgresql", channel_dsn), connect("postgresql", channel_dsn)
    try:
        ca = insert_header(a, "A")          # takes the lower counter, stays open
        cb = insert_header(b, "B")
        b.commit()                          # the higher counter commits first
        assert cb == ca + 1
        up.poll_once()
        assert header.position.high == cb and header.position.low == ca - 1
        assert [(g.start, g.end) for g in header.position.gaps] == [(ca, ca)]
        # "upload only counters above the largest received" would now never read counter ca again.
        for _ in range(3):                  # A is still running: the gap is kept however often we poll
            up.poll_once()
        assert [(g.start, g.end) for g in header.position.gaps] == [(ca, ca)]
        a.commit()                          # the lower counter commits last
        up.poll_once()
        assert header.position.low == header.position.high == cb and not header.position.gaps

        cc = insert_header(a, "C")          # rolled back: a permanent gap
        a.rollback()
        cd = insert_header(b, "D")
        b.commit()
        up.poll_once()
        assert [(g.start, g.end) for g in header.position.gaps] == [(cc, cc)]
        up.poll_once()                      # C has ended (horizon passed): the gap is skipped
        assert not header.position.gaps and header.position.low == cd and header.position.skipped == 1
    finally:
        a.close()
        b.close()
        up.close()

    published = [(k["counter"], env["after"]["TRANSACTIONID"]) for k, env, _ in upload_records(topo, "pg01")
                 if k["table"] == "ax.RETAILTRANSACTIONTABLE"]
    assert published == [(cb, "B"), (ca, "A"), (cd, "D")]

    # ... and HQ receives all three, once
    sink = UploadSink(topo, SinkOptions(poll_timeout=0.1))
    sink.setup()
    assert sink.consumer is not None

    def applied() -> bool:
        msgs = [m for m in sink.consumer.consume(100, timeout=0.5) if m.error() is None]  # type: ignore[union-attr]
        if msgs:
            apply_batch(sink.stage(), msgs, threading.Event())
        hq = connect("sqlite", topo.hq.dsn)
        n = hq.execute('SELECT COUNT(*) FROM "dbo_RETAILTRANSACTIONTABLE"').fetchone()[0]
        hq.close()
        return n >= 3

    wait_until(applied, 60, "HQ to apply the uploads", interval=0)
    hq = connect("sqlite", topo.hq.dsn)
    rows = hq.execute('SELECT "TRANSACTIONID", "REPLICATIONCOUNTERFROMORIGIN", "CDXORIGINID"'
                      ' FROM "dbo_RETAILTRANSACTIONTABLE" ORDER BY 2').fetchall()
    hq.close()
    sink.close()
    assert rows == [("A", ca, "pg01"), ("B", cb, "pg01"), ("D", cd, "pg01")]
