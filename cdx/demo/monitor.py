"""What the demo shows while it runs: rows per channel database, sales at HQ, process state."""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field

from rich.table import Table

from cdx.demo.environment import DemoEnv
from cdx.demo.processes import ProcessGroup
from cdx.dialects import connect, get_dialect


@dataclass
class ChannelRow:
    owner: str
    kind: str
    group: str
    rows: int
    expected: int | None
    sales_written: int = 0
    lag: str = ""


@dataclass
class Snapshot:
    channels: list[ChannelRow] = field(default_factory=list)
    hq_sales: int = 0

log = logging.getLogger("cdx.demo")


def count_rows(demo: DemoEnv, owner: str) -> int:
    """Rows in the database's download tables (tables not created yet count 0)."""
    db = demo.database(owner)
    d = get_dialect(db.dialect)
    total = 0
    with closing(connect(db.dialect, db.dsn)) as conn:
        for subjob in demo.topology.download_subjobs():
            target = subjob.target
            try:
                total += conn.execute(f"SELECT count(*) FROM {d.qualified(target.schema, target.name)}").fetchone()[0]
            except Exception as exc:  # a table not created yet counts 0
                log.debug("demo monitor: %s not countable yet: %s", target, exc)
            conn.rollback()
    return total


def hq_sales(demo: DemoEnv) -> int:
    d = demo.hq_dialect
    with closing(demo.hq()) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {d.qualified('dbo', 'RETAILTRANSACTIONTABLE')}").fetchone()[0])


def snapshot(demo: DemoEnv, expected: dict[str, int], sales_written: dict[str, int],
             lags: dict[str, tuple[int | None, float | None]] | None = None) -> Snapshot:
    """``lags``: owner id -> (records behind, seconds behind), as ``cdx status`` computes them."""
    snap = Snapshot(hq_sales=hq_sales(demo))
    for info in demo.topology.databases():
        records, seconds = (lags or {}).get(info.owner_id, (None, None))
        lag = "" if records is None else f"{records:,} rec" + ("" if not seconds else f" / {seconds:.1f}s")
        snap.channels.append(ChannelRow(info.owner_id, info.kind, info.group.id, count_rows(demo, info.owner_id),
                                        expected.get(info.owner_id), sales_written.get(info.owner_id, 0), lag))
    return snap


def render(snap: Snapshot, group: ProcessGroup, phase: str) -> Table:
    table = Table(title=f"cdx demo: {phase}", title_justify="left", expand=False)
    for col in ("database", "kind", "group", "rows", "expected", "lag", "sales written"):
        table.add_column(col, justify="right" if col in ("rows", "expected", "lag", "sales written") else "left")
    for ch in snap.channels:
        done = ch.expected is not None and ch.rows == ch.expected
        rows = f"[green]{ch.rows:,}[/]" if done else f"{ch.rows:,}"
        table.add_row(ch.owner, ch.kind, ch.group, rows, "" if ch.expected is None else f"{ch.expected:,}",
                      ch.lag, f"{ch.sales_written:,}")
    procs = ", ".join(f"[green]{n}[/]" if r.running else f"[red]{n} (exited)[/]" for n, r in group.roles.items())
    table.caption = f"processes: {procs}   |   sales received at HQ: {snap.hq_sales:,}"
    return table
