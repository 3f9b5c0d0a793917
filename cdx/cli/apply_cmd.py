"""``cdx topology apply FILE``: validate, show the diff against the revision in force, run every step the
change needs (``cdx.cli.apply_steps``), publish the new revision for every running role to pick up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer

from cdx.cli.app import console, err_console, user_errors
from cdx.cli.topology_cmd import print_changes, print_issues
from cdx.errors import CdxError
from cdx.topology.issues import IssuesError


@user_errors
def apply(
    file: Path = typer.Argument(..., help="The new topology file.", show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the diff and the steps; change nothing."),
    tracking_retention_days: float = typer.Option(2.0, min=0.0, help="Change-tracking retention for new HQ tables"
                                                            " (as `cdx hq enable-tracking`)."),
) -> None:
    """Roll out FILE: Kafka topics, HQ change tracking, channel tables, then publish it as the next revision
    on the control topic; every running role reloads it between two batches (watch `cdx status`).
    Idempotent: run it again after a failure; an unchanged file publishes nothing new."""
    from cdx.cli.apply_steps import ApplyContext, plan_steps
    from cdx.cli.boundary import KAFKA
    from cdx.cli.common import require_hq, require_kafka
    from cdx.kafka.control import latest_revision
    from cdx.topics import topology_topic
    from cdx.topology.diff import diff_topologies
    from cdx.topology.live import topology_name
    from cdx.topology.loader import load_topology_text, read_text

    text = read_text(file)
    try:
        after = load_topology_text(text, str(file))
    except IssuesError as exc:
        print_issues(exc)
    KAFKA["servers"] = after.kafka.bootstrap_servers
    require_kafka(after)
    require_hq(after)  # before step 1: a wrong hq.dsn would otherwise fail at step 2, after the topics
    name, topic = topology_name(after), topology_topic(after.kafka.topic_prefix)
    in_force = latest_revision(after.kafka.client_config(), topic, name)
    before = None
    if in_force is None:
        console.print(f"topology {name!r}: no revision published yet on {topic}; this is the first", markup=False)
    else:
        console.print(f"topology {name!r}: {in_force.label} in force (from {in_force.source or '?'})", markup=False)
        try:
            before = load_topology_text(in_force.text, f"revision {in_force.label}")
        except CdxError as exc:
            err_console.print(f"warning: {in_force.label} does not load here ({exc}); steps assume nothing exists",
                              markup=False, soft_wrap=True)
    changes = diff_topologies(before, after) if before is not None else []
    if before is not None:
        print_changes(changes)
    ctx = ApplyContext(file, text, after, before, in_force, tuple(changes),
                       timedelta(days=tracking_retention_days))
    steps = plan_steps(ctx)
    console.print(f"{len(steps)} step(s):", style="bold", markup=False)
    for i, step in enumerate(steps, 1):
        console.print(f"  {i}. {step.description}", markup=False, highlight=False, soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing applied", markup=False)
        return
    for i, step in enumerate(steps, 1):
        result = step.run()
        console.print(f"[{i}/{len(steps)}] done: {step.description}" + (f" -> {result}" if result else ""),
                      markup=False, highlight=False, soft_wrap=True)
    console.print("every running role reloads it between two batches: watch `cdx status` (Topology rollout)",
                  markup=False)
