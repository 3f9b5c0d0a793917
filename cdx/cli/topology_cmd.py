"""``cdx topology``: validate a topology file and explain what a change to it means."""

from __future__ import annotations

from pathlib import Path

import typer

from cdx.cli.app import console, err_console, user_errors
from cdx.topology.diff import Change
from cdx.topology.issues import IssuesError
from cdx.topology.root import Topology

app = typer.Typer(help="Check topology.yaml and compare two versions of it.", no_args_is_help=True)


@app.callback()
def topology() -> None:
    """Check topology.yaml and compare two versions of it."""

FILE_HELP = "Topology file (default: $CDX_TOPOLOGY, else ./topology.yaml)."


def print_issues(exc: IssuesError) -> None:
    """Print every issue, one per line, without rich markup interpretation, and exit 1."""
    n = len(exc.issues)
    err_console.print(f"error: {exc.source or 'the ' + exc.noun} is invalid ({n} problem{'s' if n != 1 else ''}):",
                      markup=False, highlight=False, style="bold red")
    for issue in exc.issues:
        err_console.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(1)


@app.command("validate")
@user_errors
def validate(
    file: Path | None = typer.Argument(None, help=FILE_HELP, show_default=False),
    databases: bool = typer.Option(False, "--databases", help="Also read every channel and register database:"
                                                              " extension tables must have their parent's key."),
) -> None:
    """Validate FILE; print every problem (exit 1) or a one-screen summary."""
    from cdx.topology.loader import default_topology_path, load_topology
    from cdx.topology.summary import print_summary

    path = file or default_topology_path()
    try:
        topo = load_topology(path)
    except IssuesError as exc:
        print_issues(exc)
    print_summary(topo, console, str(path))
    if databases:
        _check_databases(topo)


def _check_databases(topo: Topology) -> None:
    from cdx.connectors.migrate.keys import check_deployed_keys

    problems, unreachable = check_deployed_keys(topo)
    for line in unreachable:
        err_console.print(f"warning: cannot check {line}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        err_console.print(f"error: {len(problems)} extension table(s) without their parent's key:", markup=False,
                          style="bold red")
        for p in problems:
            err_console.print(f"  {p}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1)
    console.print("databases: every deployed extension table has its parent's key", markup=False)


@app.command("diff")
@user_errors
def diff(
    old: Path = typer.Argument(..., help="The topology in force."),
    new: Path = typer.Argument(..., help="The proposed topology."),
) -> None:
    """Explain what changing OLD into NEW means operationally (bootstraps, schema and routing changes)."""
    from cdx.topology.diff import diff_topologies
    from cdx.topology.loader import load_topology

    try:
        before, after = load_topology(old), load_topology(new)
    except IssuesError as exc:
        print_issues(exc)
    print_changes(diff_topologies(before, after))


def print_changes(changes: list[Change]) -> None:
    """The changes by category, each with its operational consequence (what ``diff`` prints)."""
    if not changes:
        console.print("no operational changes", markup=False)
        return
    current = None
    for change in changes:
        if change.category != current:
            current = change.category
            console.print(f"{current}:", style="bold", markup=False)
        console.print(f"  * {change.summary}", markup=False, highlight=False, soft_wrap=True)
        console.print(f"      -> {change.action}", markup=False, highlight=False, soft_wrap=True,
                      style="yellow" if change.needs_bootstrap else None)
    bootstraps = sum(c.needs_bootstrap for c in changes)
    console.print(f"{len(changes)} change(s), {bootstraps} needing a bootstrap", markup=False)
