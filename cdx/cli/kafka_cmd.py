"""``cdx kafka plan`` / ``cdx kafka apply``: the topology's topics on a Kafka cluster as desired state.

``plan`` reads the cluster and prints what ``apply`` would do, like a Terraform plan; exit 0 when the
cluster matches, 2 when it drifted (for CI). ``apply`` makes it match, idempotently; extra topics are
deleted only with ``--prune``; changes Kafka cannot make are printed with the manual path (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load

if TYPE_CHECKING:
    from cdx.deploy.acls import AclPlan
    from cdx.deploy.topic_plan import TopicPlan

app = typer.Typer(help="Kafka topics of the topology as desired state: plan, apply.", no_args_is_help=True)

SIGNS = {"create": "[green]+ create[/]", "configure": "[yellow]~ configure[/]",
         "add-partitions": "[yellow]~ partitions[/]", "impossible": "[red]! manual[/]", "extra": "[red]- extra[/]"}


@app.callback()
def kafka() -> None:
    """Kafka topics of the topology as desired state: plan, apply."""


def _plan(topology: Path | None) -> tuple[Any, dict[str, str], TopicPlan]:
    from cdx.deploy.catalog import desired_topics
    from cdx.deploy.topic_plan import make_plan

    topo = load(topology, kafka=True)
    config = topo.kafka.client_config()
    return topo, config, make_plan(config, desired_topics(topo), topo.kafka.topic_prefix)


def _show(plan: TopicPlan, prune: bool = False) -> None:
    for change in plan.changes:
        sign = "[red]- delete[/]" if change.action == "extra" and prune else SIGNS[change.action]
        console.print(f"{sign} {change.topic} [dim]({change.kind})[/]: {change.detail}")
    counts = {a: len(plan.of(a)) for a in SIGNS}
    console.print(f"{len(plan.desired)} topics in the topology: {counts['create']} to create,"
                  f" {counts['configure'] + counts['add-partitions']} to change, {counts['impossible']} needing"
                  f" manual work, {counts['extra']} extra")


def _show_acls(acls: AclPlan, prune: bool = False) -> None:
    for grant in acls.missing:
        console.print(f"[green]+ acl[/] {grant}")
    for grant in acls.extra:
        console.print(f"[red]- acl[/] {grant}" + ("" if prune else " [dim](not in the topology; deleted only with"
                                                                  " --prune)[/]"))
    if acls.missing or acls.extra:
        console.print(f"ACLs: {len(acls.missing)} to create, {len(acls.extra)} extra")


@app.command("plan")
@user_errors
def plan_(topology: Path | None = TOPOLOGY_OPTION) -> None:
    """Show what `cdx kafka apply` would change; exit 2 when the cluster differs from the topology."""
    from cdx.deploy.acls import plan_acls

    topo, config, plan = _plan(topology)
    _show(plan)
    acls = plan_acls(config, topo)
    _show_acls(acls)
    if plan.drift or acls.drift:
        raise typer.Exit(2)
    console.print("no changes: the cluster matches the topology")


@app.command("apply")
@user_errors
def apply(
    topology: Path | None = TOPOLOGY_OPTION,
    prune: bool = typer.Option(False, "--prune", help="Also delete topics under the prefix the topology does"
                                                      " not use (their data is lost)."),
) -> None:
    """Create and change topics until the cluster matches the topology (idempotent; never deletes
    without --prune). Exit 1 when changes Kafka cannot make remain (printed with the manual path)."""
    from cdx.deploy.acls import create_acls, delete_acls, plan_acls
    from cdx.deploy.topic_plan import apply_plan

    topo, config, plan = _plan(topology)
    _show(plan, prune)
    acls = plan_acls(config, topo)
    _show_acls(acls, prune)
    done = apply_plan(config, plan, prune=prune)
    create_acls(config, acls.missing)
    if prune:
        delete_acls(config, acls.extra)
    console.print(f"applied {len(done)} topic change(s), {len(acls.missing) + (len(acls.extra) if prune else 0)}"
                  " ACL change(s)")
    if plan.of("impossible"):
        raise typer.Exit(1)
