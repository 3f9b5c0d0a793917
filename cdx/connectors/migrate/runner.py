"""Bring one database up to date with the extension scripts of its dialect.

For each script in order: recorded with the same checksum -> skipped; recorded with another
checksum -> failed ("published scripts must not change"); else checked against the rules
(refused on any violation), then run and recorded (:mod:`.execute`). The first failure stops
that database (later scripts may depend on it); they stay pending and run next time.
Idempotent and resumable: rerunning runs exactly the scripts not recorded yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cdx.connectors.migrate import history
from cdx.connectors.migrate.execute import AlreadyRecorded, ScriptFailed, run_script
from cdx.connectors.migrate.scripts import Script
from cdx.dialects import Connection, Dialect, get_dialect
from cdx.stage.sessions import kernel_ref

log = logging.getLogger("cdx.migrate")

RAN, SKIPPED, FAILED, REFUSED, PENDING = "ran", "skipped", "failed", "refused", "pending"


@dataclass(frozen=True)
class Target:
    """One database to migrate."""

    owner_id: str
    kind: str
    """``channel`` or ``offline`` (an offline register)."""
    dialect: str
    dsn: str
    redacted: str


@dataclass
class Outcome:
    script: str
    status: str
    seconds: float = 0.0
    detail: str = ""
    grants: tuple[str, ...] = ()


@dataclass
class DatabaseResult:
    target: Target
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    """Why the database could not be migrated at all (unreachable...)."""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return self.error is None and not any(o.status in (FAILED, REFUSED) for o in self.outcomes)


class Rules(Protocol):
    """What is checked and granted around each script (``cdx.connectors.migrate.checks``)."""

    def violations(self, script: Script, conn: Connection | None, dialect: Dialect) -> list[str]: ...

    def grants(self, script: Script, dialect: Dialect) -> list[str]: ...


class NoRules:
    def violations(self, script: Script, conn: Connection | None, dialect: Dialect) -> list[str]:
        return []

    def grants(self, script: Script, dialect: Dialect) -> list[str]:
        return []


@dataclass(frozen=True)
class Settings:
    timeout: float = 30 * 60.0
    """Seconds one script may run."""
    dry_run: bool = False
    rules: Rules = field(default_factory=NoRules)


Progress = Callable[[Target, Outcome], None]


def migrate_database(target: Target, scripts: Sequence[Script], settings: Settings,
                     progress: Progress | None = None) -> DatabaseResult:
    """Run the pending ``scripts`` on ``target`` (see module doc). Never raises for a database
    problem: the result carries it."""
    result = DatabaseResult(target)
    dialect = get_dialect(target.dialect)
    try:
        conn = dialect.connect(target.dsn)
    except Exception as e:
        result.error = f"cannot connect to {target.redacted}: {str(e).strip().splitlines()[0] if str(e) else e}"
        return result
    try:
        done = _history(conn, dialect, settings.dry_run)
        stopped = False
        for script in scripts:
            outcome = Outcome(script.name, PENDING) if stopped else _one(conn, dialect, script, done, settings)
            stopped = stopped or outcome.status in (FAILED, REFUSED)
            result.outcomes.append(outcome)
            if progress is not None:
                progress(target, outcome)
    except Exception as e:
        log.warning("migrate %s: %s", target.owner_id, e)
        result.error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    finally:
        try:
            conn.rollback()
        finally:
            conn.close()
    return result


def _history(conn: Connection, dialect: Dialect, dry_run: bool) -> dict[str, history.Entry]:
    if dry_run:
        with dialect.transaction(conn):
            if not dialect.table_exists(conn, *kernel_ref(dialect, history.TABLE)):
                return {}
            return history.recorded(conn, dialect)
    with dialect.transaction(conn):
        history.ensure(conn, dialect)
    with dialect.transaction(conn):
        return history.recorded(conn, dialect)


def _one(conn: Connection, dialect: Dialect, script: Script, done: dict[str, history.Entry],
         settings: Settings) -> Outcome:
    entry = done.get(script.name)
    if entry is not None:
        return _recorded(script, entry.checksum, f" on {entry.finished_at:%Y-%m-%d %H:%M:%S} UTC")
    with dialect.transaction(conn):
        problems = settings.rules.violations(script, conn, dialect)
    if problems:
        return Outcome(script.name, REFUSED, detail="; ".join(problems))
    grants = tuple(settings.rules.grants(script, dialect))
    if settings.dry_run:
        return Outcome(script.name, PENDING, detail="would run", grants=grants)
    try:
        completed = run_script(conn, dialect, script, settings.timeout, grants)
    except ScriptFailed as e:
        return Outcome(script.name, FAILED, detail=f"{script.path}: {e}")
    except AlreadyRecorded as e:
        return _recorded(script, e.checksum, " meanwhile, by another runner")
    return Outcome(script.name, RAN, completed.entry.duration_ms / 1000, grants=grants)


def _recorded(script: Script, checksum: str, when: str) -> Outcome:
    if checksum != script.checksum:
        return Outcome(script.name, FAILED, detail=(
            f"changed since it ran{when} (checksum {checksum[:12]}, now {script.checksum[:12]}):"
            " published scripts must not change: add a new script"))
    return Outcome(script.name, SKIPPED)
