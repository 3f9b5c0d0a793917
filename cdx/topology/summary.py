"""A one-screen summary of a valid topology (``cdx topology validate``), rendered with rich.

User-supplied strings are wrapped in :class:`rich.text.Text`, so brackets in ids or
descriptions are never taken for markup.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from cdx.topology.model import ChannelType, Direction
from cdx.topology.root import Topology

_ARROWS = {Direction.DOWNLOAD: "down", Direction.UPLOAD: "up"}


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, padding=(0, 1),
                  header_style="dim", pad_edge=False)
    for col in columns:
        table.add_column(col)
    return table


def summary_renderable(topo: Topology, source: str = "topology.yaml") -> Group:
    """Counts, jobs, subjobs x groups, groups with channels, schedules."""
    registers = sum(len(c.channel.offline_registers) for c in topo.channels())
    head = Text.assemble(
        (f"{source} is valid: ", "bold green"),
        f"{len(topo.jobs)} jobs, {len(topo.download_subjobs())} download + {len(topo.upload_subjobs())} upload "
        f"subjobs, {len(topo.channel_data_groups)} channel data groups, {len(topo.channels())} channels, "
        f"{registers} offline registers, {len(topo.distribution_schedules)} distribution schedules",
    )
    kafka = Text(f"kafka {topo.kafka.bootstrap_servers} (topics {topo.kafka.topic_prefix}.*), "
                 f"hq {topo.hq.dialect.value} {topo.hq.redacted()}", style="dim")
    jobs = Text("jobs: ", style="bold").append(
        ", ".join(f"{j.id} {j.description or ''}".strip() + (" (upload)" if j.direction is Direction.UPLOAD else "")
                  for j in topo.jobs) or "none", style="")

    groups = [g.id for g in topo.channel_data_groups]
    matrix = _table("subjobs -> groups (x all rows of the group's legal entities + shared rows, "
                    "f filtered per channel; channel ax.* = same table name in schema ax)",
                    "subjob", "dir", "HQ table", "channel", "jobs", *groups)
    for s in topo.subjobs:
        reached = {g.id for g in topo.groups_for_subjob(s)}
        mark = "f" if s.channel_filter else "x"
        same = s.target.name.casefold() == s.hq_table.name.casefold()
        target = f"{s.target.schema}.*" if same else str(s.target)
        target += f" +{s.extension.target}" if s.extension else ""
        matrix.add_row(Text(s.id), _ARROWS[s.direction], Text(str(s.hq_table)), Text(target),
                       Text(",".join(s.scheduled_by)), *[mark if g in reached else "." for g in groups])

    chans = _table("channel data groups", "group", "legal entities", "channels (offline registers)")
    for g in topo.channel_data_groups:
        names = ", ".join(
            c.id + (" online" if c.type is ChannelType.ONLINE else "")
            + (f" ({', '.join(r.id for r in c.offline_registers)})" if c.offline_registers else "")
            for c in g.channels
        )
        chans.add_row(Text(g.id), Text(", ".join(g.legal_entities)), Text(names or "-"))

    scheds = _table("distribution schedules", "schedule", "dir", "jobs", "groups")
    for d in topo.distribution_schedules:
        scheds.add_row(Text(d.id), _ARROWS[d.direction], Text(", ".join(d.jobs)),
                       Text(", ".join(d.channel_data_groups)))
    return Group(head, kafka, _extensions(topo), jobs, Text(""), matrix, Text(""), chans, Text(""), scheds)


def _extensions(topo: Topology) -> Text:
    """One dim line: extension schemas, scripts, roles, seed data version, post-upload call."""
    ext = topo.extensions
    parts = [f"extensions in {', '.join(ext.schemas)}",
             f"scripts {ext.scripts} (run by cdx channel migrate/init)" if ext.scripts else "no scripts"]
    roles = [r for r in (ext.roles.users, ext.roles.deploy, ext.roles.publishers, ext.roles.data_sync) if r]
    if roles:
        parts.append("grants to " + ", ".join(roles))
    if ext.seed_data is not None:
        parts.append(f"seed data {ext.seed_data.name} v{ext.seed_data.channel_db_major_version}")
    post = topo.hq.post_upload
    if post is not None:
        parts.append(f"post-upload {post.procedure or 'statement'}")
    return Text("; ".join(parts), style="dim")


def print_summary(topo: Topology, console: Console, source: str = "topology.yaml") -> None:
    """Print :func:`summary_renderable` to ``console``."""
    console.print(summary_renderable(topo, source))
