"""Migrate many databases: one at a time or ``parallel`` at once; a failed database never
blocks the others (each runs on its own connection and thread)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cdx.topology.model import Topology
from connectors.migrate.runner import DatabaseResult, Progress, Settings, Target, migrate_database
from connectors.migrate.scripts import ScriptSet
from connectors.sink.spec import sink_specs


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
