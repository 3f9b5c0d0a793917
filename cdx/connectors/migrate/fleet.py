"""Migrate many databases: one at a time or ``parallel`` at once; a failed database never
blocks the others (each runs on its own connection and thread)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cdx.connectors.migrate.runner import DatabaseResult, Progress, Settings, Target, migrate_database
from cdx.connectors.migrate.scripts import ScriptSet
from cdx.connectors.sink.spec import sink_specs
from cdx.topology.root import Topology

log = logging.getLogger("cdx.migrate")


def targets(topology: Topology, owner_ids: Iterable[str] | None = None) -> list[Target]:
    """The channel and offline-register databases of ``owner_ids`` (default: all), in topology order.
    Raises ``ConfigError`` naming any unknown id."""
    return [Target(s.owner_id, s.kind, s.dialect, s.dsn, s.redacted_dsn())
            for s in sink_specs(topology, list(owner_ids) if owner_ids else None)]


def migrate_all(dbs: Sequence[Target], scripts: ScriptSet, settings: Settings, parallel: int = 1,
                progress: Progress | None = None) -> list[DatabaseResult]:
    """Migrate every database of ``dbs``; results in the order of ``dbs``."""
    def one(target: Target) -> DatabaseResult:
        return migrate_database(target, scripts.for_dialect(target.dialect), settings, progress)

    if parallel <= 1 or len(dbs) <= 1:
        return [one(t) for t in dbs]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="migrate") as pool:
        return list(pool.map(one, dbs))


def pending_results(topology: Topology, owner_ids: Iterable[str] | None = None) -> list[DatabaseResult]:
    """Run the pending scripts of ``extensions.scripts`` (if configured) on ``owner_ids`` (default: all)."""
    from pathlib import Path

    from cdx.connectors.migrate.checks import ExtensionRules
    from cdx.connectors.migrate.scripts import discover

    ext = topology.extensions
    if not ext.scripts:
        return []
    found = discover(Path(ext.scripts))
    for warning in found.warnings:
        log.warning("%s", warning)
    settings = Settings(timeout=ext.timeout_minutes * 60, rules=ExtensionRules(topology))
    results = migrate_all(targets(topology, owner_ids), found, settings)
    for r in results:
        if r.count("ran"):
            log.info("%s: ran %d extension script(s)", r.target.owner_id, r.count("ran"))
    return results


def run_pending(topology: Topology, owner_ids: Iterable[str] | None = None) -> list[DatabaseResult]:
    """:func:`pending_results`, before any table is created (``cdx channel init`` and ``cdx channel
    bootstrap`` call this). Raises ``FatalError`` naming every database whose scripts failed, were
    refused or could not be run."""
    from cdx.errors import FatalError

    results = pending_results(topology, owner_ids)
    problems = [f"{r.target.owner_id}: {failure_text(r)}" for r in results if not r.ok]
    if problems:
        raise FatalError("extension scripts failed, so no tables were created (fix them, then run"
                         " `cdx channel migrate`): " + " | ".join(problems))
    return results


def failure_text(result: DatabaseResult) -> str:
    """Why a database's migration did not succeed, in one line."""
    if result.error:
        return result.error
    return "; ".join(f"{o.script} {o.status}: {o.detail}" for o in result.outcomes if o.status in ("failed", "refused"))
