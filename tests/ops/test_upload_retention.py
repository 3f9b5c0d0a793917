"""Upload-session retention at HQ (``cdx hq upload-sink --session-retention-days/--max-sessions``): sessions
older than the retention go, then at most the maximum per channel are kept (oldest first), whenever the sink
connects to HQ; a second pass deletes nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cdx.connectors.upload import sessions as hist
from cdx.connectors.upload.sink import SinkOptions, UploadSink
from cdx.dialects import connect, get_dialect
from cdx.stage.sessions import utcnow
from tests.upload.helpers import create_databases, fresh_pg, make_topology

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("hq_kind", ["sqlite", "postgresql"])
def test_upload_sessions_are_pruned_by_age_then_count(tmp_path: Path, kafka: str, postgres_server: str,
                                                      hq_kind: str) -> None:
    hq_dsn = f"sqlite:///{tmp_path}/hq.db" if hq_kind == "sqlite" else fresh_pg(postgres_server, "retention")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["s1", "s2"])
    create_databases(topo)
    d = get_dialect(hq_kind)
    conn = connect(hq_kind, hq_dsn)
    now = utcnow()

    def session(channel: str, age_days: float, n: int) -> hist.Session:
        at = now - dt.timedelta(days=age_days, seconds=n)
        return hist.Session(channel, "P-0001", "RetailTransactionTable", "dbo.RETAILTRANSACTIONTABLE", "t", 0, n, n,
                            started_at=at, finished_at=at)

    with d.transaction(conn):
        hist.ensure_sessions_table(conn, d)
        hist.insert_sessions(conn, d, [session("s1", 40, i) for i in range(3)]  # beyond 30 days
                             + [session("s1", 1, i) for i in range(6)] + [session("s2", 2, i) for i in range(2)])
    sink = UploadSink(topo, SinkOptions(session_retention_days=30, session_max_rows=4))
    sink.target.connect()  # the sink prunes whenever it connects to HQ (and every prune_every batches)
    assert sink.conn is not None
    sink.conn.close()
    left = {(s.channel, s.first_offset, s.finished_at) for s in hist.recent(conn, d, limit=100)}
    assert sorted((c, o) for c, o, _ in left) == [("s1", 0), ("s1", 1), ("s1", 2), ("s1", 3), ("s2", 0), ("s2", 1)]
    # the newest four of s1 are kept (offset n is n seconds older)
    with d.transaction(conn):
        assert hist.prune_sessions(conn, d, 30, 4) == 0
    conn.close()
