"""What a topology change means operationally: ``cdx topology diff OLD NEW``.

:func:`diff_topologies` compares two validated topologies and returns :class:`Change` s, each
with the operational consequence: channels to bootstrap, channel schema changes, routing
changes, tables added or dropped. Subjobs, jobs, groups, channels and registers are matched by
id (case-insensitively).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from cdx.topology.index import ChannelInfo
from cdx.topology.model import Direction, FieldMap, Subjob
from cdx.topology.root import Topology

T = TypeVar("T")

REROUTE = "the router re-routes from the compacted table topic"
"""How a download change reaches rows that exist already (``cdx.streams.reroute``): no bootstrap, no HQ load."""


@dataclass(frozen=True)
class Change:
    """One difference: ``category`` (kafka, hq, groups, channels, jobs, tables, schema, routing,
    schedules), what changed, and what it means operationally (``action``)."""

    category: str
    summary: str
    action: str

    @property
    def needs_bootstrap(self) -> bool:
        """True if a channel database (or part of it) must be loaded from scratch."""
        return "bootstrap" in self.action


def _pairs(old: Iterable[T], new: Iterable[T], key: Callable[[Any], str] = attrgetter("id")
           ) -> Iterator[tuple[T | None, T | None]]:
    """``(old item, new item)`` matched by case-folded ``key``: new items in order (``None`` when added), then
    the removed ones in old order (``(old, None)``)."""
    before, after = {key(i).casefold(): i for i in old}, {key(i).casefold(): i for i in new}
    yield from ((before.get(k), i) for k, i in after.items())
    yield from ((i, None) for k, i in before.items() if k not in after)


def _names(items: Iterable[Any]) -> str:
    return ", ".join(sorted(str(i) for i in items)) or "none"


def diff_topologies(old: Topology, new: Topology) -> list[Change]:
    """Every operational difference between ``old`` and ``new``, most disruptive categories first."""
    out: list[Change] = []
    _kafka(out, old, new)
    _groups(out, old, new)
    _channels(out, old, new)
    _jobs(out, old, new)
    _subjobs(out, old, new)
    _routing(out, old, new)
    _schedules(out, old, new)
    _extensions(out, old, new)
    return out


def _extensions(out: list[Change], old: Topology, new: Topology) -> None:
    oe, ne = old.extensions, new.extensions
    if oe.scripts != ne.scripts:
        out.append(Change("extensions", f"extension scripts {oe.scripts or 'none'} -> {ne.scripts or 'none'}",
                          "run `cdx channel migrate --all` (channel init, bootstrap and sinks run pending scripts)"))
    if {s.casefold() for s in oe.schemas} != {s.casefold() for s in ne.schemas}:
        out.append(Change("extensions", f"extension schemas {_names(oe.schemas)} -> {_names(ne.schemas)}",
                          "restart the sinks (columns of new extension tables are created NOT NULL with a default)"))
    if (oe.protected_schemas, oe.view_readable_schemas) != (ne.protected_schemas, ne.view_readable_schemas):
        out.append(Change("extensions", "protected or view-readable schemas changed",
                          "applies to scripts not run yet; run `cdx channel migrate --all --dry-run` to check them"))
    if oe.roles != ne.roles:
        out.append(Change("extensions", "extension roles changed", "applies to objects created from now on;"
                                                                   " grant existing ones by hand"))
    if old.hq.post_upload != new.hq.post_upload:
        out.append(Change("hq", "post-upload processing changed", "restart `cdx hq upload-sink`"))


def _kafka(out: list[Change], old: Topology, new: Topology) -> None:
    ok, nk = old.kafka, new.kafka
    if ok.topic_prefix != nk.topic_prefix:
        out.append(Change("kafka", f"topic prefix {ok.topic_prefix!r} -> {nk.topic_prefix!r}",
                          "every topic name changes: recreate topics and bootstrap every channel"))
    if ok.bootstrap_servers != nk.bootstrap_servers or ok.security != nk.security:
        out.append(Change("kafka", "connection settings changed", "restart every cdx process"))
    if (ok.default_partitions, ok.replication_factor) != (nk.default_partitions, nk.replication_factor):
        out.append(Change("kafka", "default partitions / replication factor changed",
                          "applies to topics created from now on; existing topics keep theirs"))
    if ok.schema_registry != nk.schema_registry:
        out.append(Change("kafka", "schema registry changed", "restart every cdx process"))
    if ok.record_encoding != nk.record_encoding:
        out.append(Change("kafka", f"encoding {ok.record_encoding!r} -> {nk.record_encoding!r}",
                          "records already on the topics keep their encoding: recreate the topics (or use a new"
                          " topic prefix), restart every cdx process and bootstrap every channel"))
    if (old.hq.dialect, old.hq.key) != (new.hq.dialect, new.hq.key):
        out.append(Change("hq", "HQ database changed",
                          "capture starts over on the new database: snapshot every table and bootstrap every channel"))
    if old.hq.name != new.hq.name:
        out.append(Change("hq", f"HQ name {old.hq.name!r} -> {new.hq.name!r}",
                          "HQ table topics are renamed: capture starts over (snapshot)"))


def _groups(out: list[Change], old: Topology, new: Topology) -> None:
    for o, g in _pairs(old.channel_data_groups, new.channel_data_groups):
        if g is None:
            assert o is not None
            out.append(Change("groups", f"channel data group {o.id!r} removed",
                              f"its channels stop receiving data; topic {old.group_topic(o.id)} can be deleted"))
            continue
        if o is None:
            out.append(Change("groups", f"channel data group {g.id!r} added",
                              f"new topic {new.group_topic(g.id)}; its channels need a bootstrap"))
            continue
        before = {e.casefold() for e in o.legal_entities}
        after = {e.casefold() for e in g.legal_entities}
        tables = _names(s.target for s in new.subjobs_for_group(g.id))
        if after - before:
            out.append(Change("groups", f"group {g.id!r} gains legal entities {_names(after - before)}",
                              f"{REROUTE} ({tables}) to {g.id!r}: rows of {_names(after - before)} come into its"
                              " channels (tables with DATAAREAID)"))
        if before - after:
            out.append(Change("groups", f"group {g.id!r} loses legal entities {_names(before - after)}",
                              f"{REROUTE} ({tables}) to {g.id!r}: rows of {_names(before - after)} are deleted"
                              " from its channels"))


def _endpoints(topo: Topology) -> dict[str, tuple[str, ChannelInfo, Any]]:
    """Channels and registers by id: (kind, channel info, the channel or register)."""
    out: dict[str, tuple[str, ChannelInfo, Any]] = {}
    for info in topo.channels():
        out[info.channel.id.casefold()] = ("channel", info, info.channel)
        for reg in info.channel.offline_registers:
            out[reg.id.casefold()] = ("offline register", info, reg)
    return out


def _channels(out: list[Change], old: Topology, new: Topology) -> None:
    oe, ne = _endpoints(old), _endpoints(new)
    for key, (kind, info, item) in ne.items():
        n_tables = len(new.subjobs_for_group(info.group.id))
        if key not in oe:
            out.append(Change("channels", f"{kind} {item.id!r} added (group {info.group.id!r})",
                              f"bootstrap its database with the {n_tables} tables of group {info.group.id!r}"))
            continue
        _kind, oinfo, oitem = oe[key]
        if oinfo.group.id.casefold() != info.group.id.casefold():
            out.append(Change("channels", f"{kind} {item.id!r} moved from group {oinfo.group.id!r} to "
                                          f"{info.group.id!r}",
                              "bootstrap it again: it now receives another group's data"))
        elif oitem.database.key != item.database.key:
            out.append(Change("channels", f"{kind} {item.id!r} has a new database",
                              f"bootstrap the new database ({item.database.redacted()})"))
        if kind == "channel" and oitem.attributes != item.attributes:
            filtered = [s.id for s in new.subjobs_for_group(info.group.id)
                        if s.channel_filter and oitem.attributes.get(s.channel_filter.attribute)
                        != item.attributes.get(s.channel_filter.attribute)]
            if filtered:
                out.append(Change("channels", f"channel {item.id!r} attributes changed",
                                  f"its sink (and its registers') resyncs from {new.group_topic(info.group.id)} under"
                                  f" the new filter value of {_names(filtered)}: rows move in and out, no HQ load"))
    for key, (kind, info, item) in oe.items():
        if key not in ne:
            upload = " and its upload" if kind == "channel" else ""
            out.append(Change("channels", f"{kind} {item.id!r} removed (was in group {info.group.id!r})",
                              f"stop its sink{upload}; its database is no longer updated"))


def _jobs(out: list[Change], old: Topology, new: Topology) -> None:
    for o, j in _pairs(old.jobs, new.jobs):
        if j is None:
            assert o is not None
            out.append(Change("jobs", f"job {o.id!r} removed", "its subjobs are no longer scheduled by it"))
        elif o is None:
            out.append(Change("jobs", f"{j.direction.value} job {j.id!r} added", "no effect until a schedule runs it"))
        elif o.direction is not j.direction:
            out.append(Change("jobs", f"job {j.id!r} is now {j.direction.value}", "its subjobs change direction"))


def _subjobs(out: list[Change], old: Topology, new: Topology) -> None:
    for o, s in _pairs(old.subjobs, new.subjobs):
        if s is None:
            assert o is not None
            out.append(Change("tables", f"table {o.hq_table} removed (subjob {o.id!r})",
                              f"{o.target} is no longer updated; drop it from the channel databases if unused"))
        elif o is None:
            groups = _names(g.id for g in new.groups_for_subjob(s))
            if s.direction is Direction.DOWNLOAD:
                action = (f"enable change tracking on {s.hq_table} (`cdx hq enable-tracking --only-new`); capture"
                          f" snapshots it; the router reads its new topic and routes it to {groups}; their sinks"
                          f" create {s.target} and fill it")
            else:
                action = f"create {s.hq_table} at HQ; channels of {groups} start uploading {s.target}"
            out.append(Change("tables", f"table {s.hq_table} added (subjob {s.id!r})", action))
        else:
            _subjob_change(out, o, s)


def _fields_diff(out: list[Change], s: Subjob, table: str, before: tuple[FieldMap, ...],
                 after: tuple[FieldMap, ...]) -> None:
    down = s.direction is Direction.DOWNLOAD
    for o, f in _pairs(before, after, lambda f: f.name):
        if f is None:
            assert o is not None
            out.append(Change("schema", f"{table}: field {o.name} removed (channel column {o.channel_name})",
                              f"column {o.channel_name} is no longer updated; "
                              + ("the channels keep it with its values (never dropped by cdx: drop it by hand once"
                                 " unused)" if down else "drop it when unused")))
        elif o is None:
            out.append(Change("schema", f"{table}: field {f.name} added (channel column {f.channel_name})",
                              f"{REROUTE} {s.hq_table}: the sinks add column {f.channel_name} to {table} and fill it"
                              " for every existing row, no HQ load" if down else
                              f"channel schema change: add column {f.channel_name} to {table}; new uploads carry it"))
        elif o.channel_name.casefold() != f.channel_name.casefold():
            old_name = o.channel_name
            out.append(Change("schema", f"{table}: field {f.name} renamed {old_name} -> {f.channel_name}",
                              f"{REROUTE} {s.hq_table}: the sinks add column {f.channel_name} to {table} and fill it"
                              f" for every existing row; column {old_name} is kept with its values, no longer written"
                              " (drop it by hand once unused)" if down else
                              f"channel schema change: rename column {old_name} to {f.channel_name}"))


def _subjob_change(out: list[Change], o: Subjob, n: Subjob) -> None:
    name = f"subjob {n.id!r}"
    if o.direction is not n.direction:
        out.append(Change("tables", f"{name} is now {n.direction.value}", "replication reverses: re-plan this table"))
    down = n.direction is Direction.DOWNLOAD
    if o.hq_table.key() != n.hq_table.key():
        out.append(Change("tables", f"{name} reads {n.hq_table} instead of {o.hq_table}",
                          f"enable change tracking on {n.hq_table}; capture snapshots it; the router routes its new"
                          " topic from the beginning to every group that receives it" if down else
                          "new HQ table: uploads go there from now on"))
    if o.target.key() != n.target.key():
        out.append(Change("schema", f"{name} targets {n.target} instead of {o.target}",
                          f"{REROUTE} {n.hq_table}: the sinks create {n.target} and fill it; {o.target} is no longer"
                          " written (left as it is)" if down else f"channel schema change: uploads read {n.target}"))
    _fields_diff(out, n, str(n.target), o.fields, n.fields)
    if o.extension != n.extension:
        if o.extension is None or n.extension is None:
            what = "added" if n.extension else "removed"
            ext = n.extension or o.extension
            assert ext is not None
            action = (f"{REROUTE} {n.hq_table}: the sinks create {ext.target} and fill it" if n.extension
                      else f"{ext.target} is no longer written (left as it is)")
            out.append(Change("schema", f"{name}: extension table {ext.target} {what}", action if down else
                              f"channel schema change: {'create' if n.extension else 'stop using'} {ext.target}"))
        else:
            _fields_diff(out, n, str(n.extension.target), o.extension.fields, n.extension.fields)
            if (o.extension.target.key(), o.extension.override_target, o.extension.key) != (
                    n.extension.target.key(), n.extension.override_target, n.extension.key):
                out.append(Change("schema", f"{name}: extension table settings changed",
                                  f"check {n.extension.target} in the channel databases"))
    if {j.casefold() for j in o.scheduled_by} != {j.casefold() for j in n.scheduled_by}:
        out.append(Change("routing", f"{name} moved from jobs {_names(o.scheduled_by)} to {_names(n.scheduled_by)}",
                          "routing change: it now runs with other jobs (see group changes below)"))
    if o.replication_counter != n.replication_counter:
        out.append(Change("tables", f"{name}: replication counter {o.replication_counter} -> "
                                    f"{n.replication_counter}", "upload positions restart from the new column"))
    if o.channel_filter != n.channel_filter:
        out.append(Change("routing", f"{name}: channel filter changed",
                          f"{REROUTE} {n.hq_table} with the new filter column; every channel receiving it resyncs from"
                          " its group topic under the new filter: rows move in and out, no HQ load"))


def _routing(out: list[Change], old: Topology, new: Topology) -> None:
    for s in new.subjobs:
        prev = old.subjob(s.id)
        if prev is None or prev.direction is not s.direction:
            continue
        before = {g.id.casefold(): g.id for g in old.groups_for_subjob(prev)}
        after = {g.id.casefold(): g.id for g in new.groups_for_subjob(s)}
        gained = [after[k] for k in after if k not in before]
        lost = [before[k] for k in before if k not in after]
        verb = "reaches" if s.direction is Direction.DOWNLOAD else "is uploaded from"
        if gained:
            action = (f"the router routes {s.hq_table} to {_names(gained)} from the beginning of its table topic;"
                      f" their sinks create {s.target} and fill it" if s.direction is Direction.DOWNLOAD
                      else f"channels of {_names(gained)} start uploading {s.target}")
            out.append(Change("routing", f"{s.hq_table} now {verb} {_names(gained)}", action))
        if lost:
            out.append(Change("routing", f"{s.hq_table} no longer {verb} {_names(lost)}",
                              "its rows there are no longer updated"))


def _schedules(out: list[Change], old: Topology, new: Topology) -> None:
    for o, d in _pairs(old.distribution_schedules, new.distribution_schedules):
        if d is None:
            assert o is not None
            out.append(Change("schedules", f"schedule {o.id!r} removed", "see routing changes"))
        elif o is None:
            out.append(Change("schedules", f"{d.direction.value} schedule {d.id!r} added", "see routing changes"))
        elif (o.direction, o.jobs, o.channel_data_groups) != (d.direction, d.jobs, d.channel_data_groups):
            out.append(Change("schedules", f"schedule {d.id!r} changed", "see routing changes"))
