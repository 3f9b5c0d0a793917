"""``cdx channel migrate``: run extension scripts on channel and offline-register databases."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cdx.cli.app import console, err_console, new_table, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load
from cdx.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cdx.connectors.migrate.runner import DatabaseResult, Outcome, Progress, Target
    from cdx.topology.root import Topology


def scripts_dir(topo: Topology, given: str | None) -> Path | None:
    """``--scripts`` or the topology's ``extensions.scripts`` (None when neither is set). An empty
    ``--scripts`` is a ``ConfigError``: ``Path("")`` is the current folder, never what was meant (``.``
    says so when it is)."""
    if given is not None:
        if not given.strip():
            raise ConfigError("--scripts is empty: give the folder of the .sql scripts (`.` for this folder)")
        return Path(given)
    return Path(topo.extensions.scripts) if topo.extensions.scripts else None


@user_errors
def migrate(
    topology: Path | None = TOPOLOGY_OPTION,
    scripts: str | None = typer.Option(None, "--scripts", "-s", metavar="<path>",
                                       help="Directory of .sql scripts (default: extensions.scripts)."),
    channel: list[str] | None = typer.Option(None, "--channel", "-c",
                                             help="Channel or offline-register id (repeatable)."),
    all_: bool = typer.Option(False, "--all", help="Every channel and offline-register database."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the rules and list what would run and be granted;"
                                                          " change nothing."),
    parallel: int = typer.Option(1, "--parallel", "-p", min=1, help="Databases migrated at once."),
    timeout: float | None = typer.Option(None, "--timeout", help="Minutes one script may run"
                                                                 " (default: extensions.timeout_minutes, 30)."),
) -> None:
    """Run the extension scripts (--scripts) on each selected database, in file-name order, each once.

    Scripts are checked against the extension rules first (docs/extensions.md). A completed script is recorded \
in the database (cdx.cdx_extension_history) and never runs there again; a failed one records nothing and runs \
next time. Exit 1 if any database failed."""
    from cdx.connectors.migrate.checks import ExtensionRules
    from cdx.connectors.migrate.fleet import migrate_all, targets
    from cdx.connectors.migrate.runner import Settings
    from cdx.connectors.migrate.scripts import discover

    if bool(channel) == all_:
        raise ConfigError("name the databases: --channel ID (repeatable) or --all")
    topo = load(topology)
    directory = scripts_dir(topo, scripts)
    if directory is None:
        raise ConfigError("no scripts directory: pass --scripts DIR or set extensions.scripts in the topology")
    found = discover(directory)
    for warning in found.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    dbs = targets(topo, channel or None)
    minutes = timeout if timeout is not None else topo.extensions.timeout_minutes
    if minutes <= 0:
        raise ConfigError("--timeout must be a positive number of minutes")
    settings = Settings(timeout=minutes * 60, dry_run=dry_run, rules=ExtensionRules(topo))
    total = sum(len(found.for_dialect(t.dialect)) for t in dbs)
    results = _run_with_progress(lambda progress: migrate_all(dbs, found, settings, parallel, progress), total)
    _summary(results, dry_run)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _run_with_progress(run: Callable[[Progress], list[DatabaseResult]], total: int) -> list[DatabaseResult]:
    """``run(progress)`` with a progress bar on a terminal, one line per script run otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    lock = threading.Lock()
    if not console.is_terminal:
        def line(target: Target, outcome: Outcome) -> None:
            if outcome.status != "skipped":
                with lock:
                    console.print(f"{target.owner_id}: {outcome.script} {outcome.status}", markup=False)
        return run(line)
    with Progress(TextColumn("[bold]migrate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("", total=max(total, 1))

        def advance(target: Target, outcome: Outcome) -> None:
            with lock:
                bar.update(task, advance=1, description=f"{target.owner_id}: {outcome.script} {outcome.status}")
        return run(advance)


def _summary(results: list[DatabaseResult], dry_run: bool) -> None:
    table = new_table("extension scripts" + (" (dry run: nothing changed)" if dry_run else ""),
                      ("database", "kind", "dialect", "ran", "skipped", "failed", "pending", "result"))
    for r in results:
        t = r.target
        failed = r.count("failed") + r.count("refused")
        result = "[red]unreachable[/]" if r.error else "[red]failed[/]" if failed else \
            "ok" if r.outcomes else f"ok (no {t.dialect} scripts)"
        table.add_row(t.owner_id, t.kind, t.dialect, str(r.count("ran")), str(r.count("skipped")), str(failed),
                      str(r.count("pending")), result)
    console.print(table)
    for r in results:
        if r.error:
            err_console.print(f"{r.target.owner_id}: {r.error}", markup=False, highlight=False, soft_wrap=True)
        for o in r.outcomes:
            if o.status in ("failed", "refused"):
                err_console.print(f"{r.target.owner_id}: {o.script} {o.status}: {o.detail}", markup=False,
                                  highlight=False, soft_wrap=True)
            elif dry_run and o.status == "pending" and o.detail:
                console.print(f"{r.target.owner_id}: would run {o.script}", markup=False, highlight=False)
                for grant in o.grants:
                    console.print(f"  would grant: {grant}", markup=False, highlight=False, soft_wrap=True)
