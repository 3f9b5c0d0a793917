"""Helpers of the sink-operations tests: the CLI, download sessions, waiting for sinks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner, Result

from cdx.cli import status_cmd
from cdx.cli.main import app
from cdx.connectors.sink import sessions as hist
from cdx.connectors.sink.host import SinkHost
from cdx.dialects import connect, get_dialect
from tests.sink.helpers import Db, FakeRouter

status_app = typer.Typer()
"""``cdx status`` alone (the lead registers it in ``cdx.cli.main``)."""
status_app.command()(status_cmd.status)


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def status_json(path: Path, *args: str) -> dict[str, Any]:
    """``cdx status --json`` (the command of ``cdx.cli.status_cmd``), parsed."""
    res = CliRunner().invoke(status_app, ["--topology", str(path), "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def by_db(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["owner_id"]: d for d in status["databases"]}


def sessions_of(db: Db, owner: str | None = None) -> list[hist.Session]:
    """Every download session of ``db``, oldest first."""
    d = get_dialect(db.dialect)
    conn = connect(db.dialect, db.dsn)
    try:
        return list(reversed(hist.recent(conn, d, owner or db.id, 1_000_000)))
    finally:
        conn.rollback()
        conn.close()


def caught_up(host: SinkHost, router: FakeRouter) -> bool:
    ends = router.ends()
    return all(s.caught_up(ends) for s in host.sinks)


def host_state(host: SinkHost) -> str:
    return str([(s.name, s.status, s.last_error, s.state.offsets) for s in host.sinks])
