"""cdx hq upload-sink calls hq.post_upload once per upload session that inserted rows, after the session
commits, and records the result (real broker, PostgreSQL HQ with a stored procedure)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cdx.topology.extensions import PostUpload
from tests.upload.helpers import create_databases, expected_rows, fresh_pg, hq_count, make_topology, sell, wait_until

pytestmark = pytest.mark.integration


def _done(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT COUNT(*) FROM cdx.cdx_upload_post_processing WHERE status = 'Done'").fetchone()
        return int(row[0]) if row else 0


def test_procedure_runs_once_per_session(tmp_path: Path, kafka: str, postgres_server: str, running) -> None:
    hq_dsn = fresh_pg(postgres_server, "post")
    topo = make_topology(tmp_path, kafka, hq_dsn, ["s01", "s02"])
    hq = topo.hq.model_copy(update={"post_upload": PostUpload(procedure="public.process_upload")})
    topo = topo.model_copy(update={"hq": hq})
    create_databases(topo)
    with psycopg.connect(hq_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE processed (session_id text PRIMARY KEY, rows_at_call bigint NOT NULL)")
        conn.execute("CREATE PROCEDURE process_upload(s text) LANGUAGE plpgsql AS $$ BEGIN INSERT INTO processed"
                     " SELECT s, rows_inserted FROM cdx.upload_sessions WHERE session_id = s; END $$")
    for i, c in enumerate(("s01", "s02")):
        sell(topo, c, 15, seed=i)
    run = running(topo)
    want = expected_rows(topo)
    wait_until(lambda: hq_count(topo) >= want, 90, "HQ to receive every row", check=run.check)
    with psycopg.connect(hq_dsn) as conn:
        sessions = {r[0]: r[1] for r in conn.execute(
            "SELECT session_id, rows_inserted FROM cdx.upload_sessions WHERE rows_inserted > 0").fetchall()}
    wait_until(lambda: _done(hq_dsn) >= len(sessions), 60, "every session to be processed", check=run.check)
    run.stop()
    with psycopg.connect(hq_dsn) as conn:
        processed = dict(conn.execute("SELECT session_id, rows_at_call FROM processed").fetchall())
        results = conn.execute("SELECT status, attempts, error FROM cdx.cdx_upload_post_processing").fetchall()
    assert processed == sessions  # each session once, called after its rows were committed
    assert set(results) == {("Done", 1, None)}

    from typer.testing import CliRunner

    from cdx.cli.main import app
    from cdx.topology.dump import dump_topology

    path = tmp_path / "with-post-upload.yaml"
    path.write_text(dump_topology(topo), encoding="utf-8")
    shown = CliRunner().invoke(app, ["hq", "upload-status", "-t", str(path)])
    assert shown.exit_code == 0, shown.output
    assert f"Post-upload processing (0 Pending, {len(sessions)} Done, 0 Failed)" in shown.output
