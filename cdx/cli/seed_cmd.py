"""``cdx seed``: import RetailCdxSeedData XML (CDX seed data and extensions) into topology.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cdx.cli.app import console, err_console, user_errors
from cdx.errors import ConfigError
from cdx.topology.issues import IssuesError

app = typer.Typer(help="Import CDX seed data (RetailCdxSeedData XML).", no_args_is_help=True)


@app.callback()
def seed() -> None:
    """Import CDX seed data (RetailCdxSeedData XML) into topology.yaml."""


@app.command("import")
@user_errors
def import_(
    files: list[Path] = typer.Argument(..., help="BASE.xml first, then EXTENSION.xml files, applied in order."),
    output: Path | None = typer.Option(
        None, "-o", "--output",
        help="Where to write the topology ('-' for stdout). Default: the --into file, else topology.yaml."),
    into: Path | None = typer.Option(
        None, "--into", help="Apply the seed files to this topology's jobs and subjobs, keeping everything else."),
    replace: bool = typer.Option(
        False, "--replace", help="With --into: drop its jobs and subjobs first (CDX 'delete existing configuration')."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Merge seed XML files with CDX's rules and write a validated topology.yaml.

    Without --into the result has placeholder kafka/hq/channel_data_groups/schedules to edit.
    """
    from cdx.cli.topology_cmd import print_issues
    from cdx.topology.seed_output import import_seed

    if replace and into is None:
        raise ConfigError("--replace needs --into FILE")
    target = output or into or Path("topology.yaml")
    to_stdout = str(target) == "-"
    if not to_stdout and target.exists() and not force and target != into:
        raise ConfigError(f"{target} exists: use --into {target} to merge into it, or --force to overwrite it")
    try:
        result = import_seed(files, into=into, replace=replace, output_name=str(target))
    except IssuesError as exc:
        print_issues(exc)
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if to_stdout:
        sys.stdout.write(result.text)
        return
    try:
        target.write_text(result.text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    topo = result.topology
    console.print(f"wrote {target}: {len(topo.jobs)} jobs, {len(topo.subjobs)} subjobs", markup=False)
    if into is None:
        console.print("kafka, hq, channel_data_groups and distribution_schedules are placeholders: edit them, "
                      "then run `cdx topology validate`", markup=False)
