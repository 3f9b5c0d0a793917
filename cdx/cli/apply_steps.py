"""The ordered steps of ``cdx topology apply``, as data.

A :class:`Step` has a one-line ``description`` (what ``--dry-run`` and the run print) and an
idempotent ``run()`` (running it again after a success, or after a failure part-way, is safe and
finishes the job); ``run`` may return a one-line result to print. Steps are built from an
:class:`ApplyContext` by the **builders** of :data:`BUILDERS`, in that order, and the publish step
always comes last (roles only see the new revision once everything it needs exists).

A builder is ``Callable[[ApplyContext], Iterable[Step]]``. It may raise a ``CdxError`` while
building (a change that cannot be applied, e.g. fewer partitions): every builder runs before any
step does, so bad input applies nothing. A step that fails at run time stops the apply with one
error line; the steps before it stay done (each is idempotent: run ``apply`` again).

Download-side builders (backfills of new fields, rows moving between channels, ...) go after
:func:`channel_table_steps`: ``BUILDERS.insert(BUILDERS.index(channel_table_steps) + 1, my_steps)``,
or edit the list below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cdx.errors import ConfigError
from cdx.kafka.control import Revision
from cdx.topology.diff import Change
from cdx.topology.root import Topology


@dataclass(frozen=True)
class ApplyContext:
    """What a builder knows: the file and its validated topology (``after``), the revision in force
    (``before``/``in_force``; None when none was ever published) and the diff between them."""

    path: Path
    text: str
    after: Topology
    before: Topology | None
    in_force: Revision | None
    changes: tuple[Change, ...] = ()
    tracking_retention: timedelta = timedelta(days=2)


@dataclass(frozen=True)
class Step:
    """One step: ``description`` for the printout, ``run`` idempotent (returns an optional result line)."""

    description: str
    run: Callable[[], str | None]


StepBuilder = Callable[[ApplyContext], Iterable[Step]]


# ------------------------------------------------------------------------------------- kafka
def kafka_steps(ctx: ApplyContext) -> Iterable[Step]:
    """Topics (and ACLs with ``kafka.principals``) as ``cdx kafka apply`` makes them, never pruning."""
    from cdx.deploy.acls import create_acls, plan_acls
    from cdx.deploy.catalog import desired_topics
    from cdx.deploy.topic_plan import apply_plan, make_plan

    topo = ctx.after
    config = topo.kafka.client_config()
    plan = make_plan(config, desired_topics(topo), topo.kafka.topic_prefix)
    impossible = plan.of("impossible")
    if impossible:
        raise ConfigError("Kafka cannot make these topic changes, nothing was applied: "
                          + "; ".join(f"{c.topic}: {c.detail}" for c in impossible)
                          + " (see `cdx kafka plan`; change the topology back or follow the manual path)")
    acls = plan_acls(config, topo)
    todo = [c for c in plan.changes if c.action in ("create", "configure", "add-partitions")]
    if not todo and not acls.missing:
        return
    what = ", ".join(f"{c.action} {c.topic}" for c in todo[:6])
    what += f" and {len(todo) - 6} more" if len(todo) > 6 else ""
    acl_part = f"; create {len(acls.missing)} ACL(s)" if acls.missing else ""

    def run() -> str:
        done = apply_plan(config, plan)
        create_acls(config, acls.missing)
        return f"{len(done)} topic change(s), {len(acls.missing)} ACL(s)"

    yield Step(f"Kafka topics: {what or 'none'}{acl_part} (as `cdx kafka apply`)", run)


# ------------------------------------------------------------------------------------- HQ
def _tracked_tables(topo: Topology) -> dict[str, tuple[str | None, str]]:
    return {str(s.hq_table).casefold(): (s.hq_table.schema, s.hq_table.name)
            for s in topo.download_subjobs() if s.source_topic is None}


def tracking_steps(ctx: ApplyContext) -> Iterable[Step]:
    """Change tracking on the HQ tables of new download subjobs (every table on a first apply)."""
    new = _tracked_tables(ctx.after)
    old = _tracked_tables(ctx.before) if ctx.before is not None else {}
    tables = [ref for key, ref in sorted(new.items()) if key not in old]
    if not tables:
        return

    def run() -> str:
        from cdx.cli.common import hq_database
        from cdx.connectors.capture.enable import untracked_tables
        from cdx.connectors.capture.tracking import TableRef, tracker_for

        # only tables not tracked yet: enabling a tracked one re-installs triggers (deadlocks busy writers)
        with hq_database(ctx.after) as (conn, _):
            tracker = tracker_for(conn, ctx.after.hq.dialect)
            todo = untracked_tables(tracker, [TableRef(schema, name) for schema, name in tables])
            if todo:
                tracker.enable(todo, ctx.tracking_retention)
        return f"tracking {len(todo)} new table(s)" + (f" ({len(tables) - len(todo)} tracked already)"
                                                       if len(todo) < len(tables) else "")

    names = ", ".join(f"{s}.{n}" if s else n for s, n in tables)
    yield Step(f"HQ change tracking on {names} (as `cdx hq enable-tracking`)", run)


# ------------------------------------------------------------------------------------- channels
def channel_table_steps(ctx: ApplyContext) -> Iterable[Step]:
    """``cdx channel init`` for each channel and register database: state table, channel tables and
    missing columns (tables whose records have not been routed yet are created by the sink later).
    A database that does not answer is reported, not fatal: its sink creates them when it connects."""
    for db in ctx.after.databases():
        yield Step(f"channel tables and columns in {db.owner_id} (as `cdx channel init -c {db.owner_id}`)",
                   _init_one(ctx.after, db.owner_id))


def _init_one(topo: Topology, owner_id: str) -> Callable[[], str]:
    def run() -> str:
        from cdx.connectors.sink.init import init_databases
        from cdx.errors import DatabaseUnreachable, RetriableError

        try:
            (r,) = init_databases(topo, [owner_id])
        except (DatabaseUnreachable, RetriableError) as exc:
            return f"skipped, database not reachable ({exc}); its sink creates the tables when it connects"
        return (f"{len(r.created)} created, {len(r.added_columns)} columns added, {len(r.existing)} existing,"
                f" {len(r.pending)} pending")
    return run


# ------------------------------------------------------------------------------------- publish
def publish_step(ctx: ApplyContext) -> Step:
    """Publish the file's text as the next revision on ``<prefix>._topology`` (always last)."""
    from cdx.kafka.control import ensure_control_topics, publish_revision, text_hash
    from cdx.topics import topology_roles_topic, topology_topic
    from cdx.topology.live import topology_name

    k = ctx.after.kafka
    topic = topology_topic(k.topic_prefix)
    name = topology_name(ctx.after)
    number = (ctx.in_force.number + 1) if ctx.in_force is not None else 1
    same = ctx.in_force is not None and ctx.in_force.sha256 == text_hash(ctx.text)

    def run() -> str:
        config = k.client_config()
        ensure_control_topics(config, (topic, topology_roles_topic(k.topic_prefix)), k.replication_factor)
        rev, new = publish_revision(config, topic, name, ctx.text, str(ctx.path))
        return f"published {rev.label}" if new else f"{rev.label} already published (same text)"

    label = f"r{ctx.in_force.number} again (unchanged)" if same and ctx.in_force else f"r{number}"
    return Step(f"publish {ctx.path} as revision {label} of topology {name!r} on {topic}", run)


# ------------------------------------------------------------------------------------- download side
def download_steps(ctx: ApplyContext) -> Iterable[Step]:
    """Checks and the roles' part of download changes (``cdx.cli.apply_download``)."""
    from cdx.cli.apply_download import download_changes

    return [Step(description, run) for description, run in download_changes(ctx.before, ctx.after, ctx.changes)]


BUILDERS: list[StepBuilder] = [kafka_steps, tracking_steps, channel_table_steps, download_steps]
"""Builders in order; :func:`publish_step` is appended after all of them by :func:`plan_steps`."""


def plan_steps(ctx: ApplyContext) -> list[Step]:
    """Every step, in order (builders first, publish last). Raises before anything runs on bad input."""
    steps = [step for build in BUILDERS for step in build(ctx)]
    return [*steps, publish_step(ctx)]
