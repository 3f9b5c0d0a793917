"""The post-upload processing part of ``cdx hq upload-status`` (when ``hq.post_upload`` is set)."""

from __future__ import annotations

from cdx.cli.app import console, new_table
from cdx.cli.common import hq_database
from cdx.topology.root import Topology


def print_post_processing(topo: Topology, limit: int) -> None:
    """Counts per status and the latest ``limit`` calls; nothing when post-upload processing is off."""
    from cdx.connectors.upload import post_processing as post
    from cdx.stage.sessions import kernel_ref

    if topo.hq.post_upload is None:
        return
    with hq_database(topo) as (conn, d):  # closed without commit: a read
        rows = post.statuses(conn, d) if d.table_exists(conn, *kernel_ref(d, post.TABLE)) else []
    counts = {s: sum(1 for r in rows if r[1] == s) for s in (post.PENDING, post.DONE, post.FAILED)}
    table = new_table("Post-upload processing (" + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")",
                      ("session", "status", "attempts", "result", "error", "finished (UTC)"), overflow="fold")
    for session_id, status, attempts, result, error, finished in rows[:limit]:
        table.add_row(session_id, status if status != post.FAILED else f"[red]{status}[/]", str(attempts),
                      (result or "")[:60], (error or "")[:80], f"{finished:%Y-%m-%d %H:%M:%S}" if finished else "")
    console.print(table)
