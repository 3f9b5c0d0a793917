"""Cross-reference checks: everything a single model cannot see on its own.

:func:`check_topology` returns every problem as an :class:`Issue` with its path (lines are
added by the loader). :func:`check_parts` runs the same checks on the parts of a topology
that passed structural validation, so a file with type errors still gets its reference
errors reported in the same run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cdx import topics
from cdx.topology.dsn import Dialect
from cdx.topology.extensions import Extensions
from cdx.topology.index import hq_table_key
from cdx.topology.issues import Issue
from cdx.topology.model import (
    DATAAREAID,
    ChannelDataGroup,
    Direction,
    DistributionSchedule,
    FieldMap,
    HqDatabase,
    Job,
    KafkaConfig,
    Subjob,
)
from cdx.topology.operations import check_operations
from cdx.topology.root import Topology
from cdx.topology.yamlsrc import format_path

Indexed = list[tuple[int, Any]]

PLACEHOLDER = "_cdx_invalid_"
"""Prefix of the stand-ins the loader puts where a list entry failed validation (never reported)."""


@dataclass
class Parts:
    """The valid pieces of a topology, each with its index in the file.

    ``declared_*`` hold the (case-folded) ids written in the file, valid or not, so that a
    reference to an item that failed validation is not also reported as unknown.
    """

    kafka: KafkaConfig | None
    hq: HqDatabase | None
    jobs: list[tuple[int, Job]] = field(default_factory=list)
    subjobs: list[tuple[int, Subjob]] = field(default_factory=list)
    groups: list[tuple[int, ChannelDataGroup]] = field(default_factory=list)
    schedules: list[tuple[int, DistributionSchedule]] = field(default_factory=list)
    declared_jobs: set[str] = field(default_factory=set)
    declared_groups: set[str] = field(default_factory=set)
    extensions: Extensions = field(default_factory=Extensions)

    @classmethod
    def of(cls, topo: Topology) -> Parts:
        return cls(
            topo.kafka, topo.hq,
            list(enumerate(topo.jobs)), list(enumerate(topo.subjobs)),
            list(enumerate(topo.channel_data_groups)), list(enumerate(topo.distribution_schedules)),
            {j.id.casefold() for j in topo.jobs}, {g.id.casefold() for g in topo.channel_data_groups},
            topo.extensions,
        )


def check_topology(topo: Topology) -> list[Issue]:
    """Every cross-reference problem of a structurally valid topology."""
    return check_parts(Parts.of(topo))


def check_parts(parts: Parts) -> list[Issue]:
    """Every cross-reference problem among ``parts``."""
    out: list[Issue] = []
    _unique_ids(out, "jobs", parts.jobs, "job")
    _unique_ids(out, "subjobs", parts.subjobs, "subjob")
    _unique_ids(out, "channel_data_groups", parts.groups, "channel data group")
    _unique_ids(out, "distribution_schedules", parts.schedules, "distribution schedule")
    _check_groups(out, parts)
    _check_subjobs(out, parts)
    _check_schedules(out, parts)
    _check_filters(out, parts)
    _check_extension_schemas(out, parts)
    out += check_operations(parts.jobs, parts.subjobs, parts.schedules)
    return out


def _issue(out: list[Issue], path: tuple[str | int, ...], message: str) -> None:
    out.append(Issue(format_path(path), None, message))


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _suggest(name: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _unique_ids(out: list[Issue], section: str, items: Indexed, noun: str) -> None:
    seen: dict[str, int] = {}
    for i, item in items:
        key = item.id.casefold()
        if key in seen:
            _issue(out, (section, i, "id"),
                   f"duplicate {noun} id {item.id!r} (first defined at {section}[{seen[key]}])")
        else:
            seen[key] = i
    _topic_collisions(out, section, items, noun)


def _topic_collisions(out: list[Issue], section: str, items: Indexed, noun: str) -> None:
    seen: dict[str, tuple[int, str]] = {}
    for i, item in items:
        key = topics.collision_key(item.id).casefold()
        first = seen.get(key)
        if first and first[1].casefold() != item.id.casefold():
            _issue(out, (section, i, "id"),
                   f"{noun} id {item.id!r} collides with {first[1]!r} ({section}[{first[0]}]): Kafka treats "
                   "'.' and '_' alike in topic metrics; rename one")
        seen.setdefault(key, (i, item.id))


# -- channel data groups ----------------------------------------------------------------------
def _check_groups(out: list[Issue], parts: Parts) -> None:
    owners: dict[str, tuple[str, tuple[str | int, ...]]] = {}
    db_owner: dict[str, tuple[str, str, str]] = {}
    if parts.hq is not None:
        db_owner[parts.hq.key] = ("the HQ database", "", "")
    for gi, group in parts.groups:
        gpath: tuple[str | int, ...] = ("channel_data_groups", gi)
        seen_le: set[str] = set()
        for k, entity in enumerate(group.legal_entities):
            if entity.casefold() in seen_le:
                _issue(out, (*gpath, "legal_entities", k), f"legal entity {entity!r} is listed twice")
            seen_le.add(entity.casefold())
        for ci, channel in enumerate(group.channels):
            cpath = (*gpath, "channels", ci)
            _owner(out, owners, channel.id, "channel", cpath)
            _database(out, db_owner, channel.database, (*cpath, "database"), f"channel {channel.id!r}", group.id)
            for ri, reg in enumerate(channel.offline_registers):
                rpath = (*cpath, "offline_registers", ri)
                _owner(out, owners, reg.id, "offline register", rpath)
                _database(out, db_owner, reg.database, (*rpath, "database"), f"offline register {reg.id!r}",
                          group.id)


def _owner(out: list[Issue], owners: dict[str, tuple[str, tuple[str | int, ...]]], owner_id: str, noun: str,
           path: tuple[str | int, ...]) -> None:
    keys = {owner_id.casefold(), topics.collision_key(owner_id).casefold()}
    clash = next(iter(keys & owners.keys()), None)
    if clash is None:
        owners.update(dict.fromkeys(keys, (noun, path)))
        return
    first_noun, first_path = owners[clash]
    _issue(out, (*path, "id"), f"{noun} id {owner_id!r} is already used by a {first_noun} at"
                               f" {format_path(first_path)}; channel and register ids must be unique (they name"
                               " upload topics)")


def _database(out: list[Issue], db_owner: dict[str, tuple[str, str, str]], db: Any,
              path: tuple[str | int, ...], owner: str, group_id: str) -> None:
    key = db.key
    if key == "sqlite::memory:":
        return
    first = db_owner.get(key)
    if first is None:
        db_owner[key] = (owner, group_id, format_path(path))
        return
    first_owner, first_group, first_path = first
    if not first_group:
        msg = f"{owner} uses the HQ database; a channel database must be a separate database"
    elif first_group.casefold() != group_id.casefold():
        msg = (f"database {db.redacted()!r} is also used by {first_owner} in group {first_group!r} ({first_path}); "
               "a database belongs to exactly one channel data group")
    else:
        msg = (f"database {db.redacted()!r} is also used by {first_owner} ({first_path}); every channel and "
               "offline register needs its own database")
    _issue(out, (*path, "dsn"), msg)


# -- subjobs ----------------------------------------------------------------------------------------
def _check_subjobs(out: list[Issue], parts: Parts) -> None:
    jobs = {j.id.casefold(): j for _, j in parts.jobs}
    dialect = parts.hq.dialect if parts.hq is not None else Dialect.SQLSERVER
    hq_tables: dict[tuple[str, str], tuple[int, Subjob]] = {}
    targets: dict[tuple[Direction, tuple[str, str]], tuple[int, Subjob]] = {}
    source_topics: dict[str, str] = {}
    for i, s in parts.subjobs:
        path: tuple[str | int, ...] = ("subjobs", i)
        if s.source_topic is not None:
            first = source_topics.setdefault(s.source_topic, s.id)
            if first != s.id:
                _issue(out, (*path, "source_topic"), f"topic {s.source_topic!r} is already the source of subjob"
                                                     f" {first!r}: one table topic feeds one subjob")
        _references(out, (*path, "scheduled_by"), s.scheduled_by, "job", parts.declared_jobs,
                    [j.id for j in jobs.values()], "; declare it under 'jobs'", _job_direction(
                        jobs, s.direction, f"{s.direction.value} subjob {s.id!r} is scheduled by {{dir}} job"
                        f" {{job!r}}; schedule it with {_a(s.direction.value)} job"))
        key = hq_table_key(s.hq_table, dialect)
        duplicate_source = key in hq_tables
        if duplicate_source:
            j, other = hq_tables[key]
            _issue(out, (*path, "hq_table"),
                   f"HQ table {str(s.hq_table)!r} is already replicated by subjob {other.id!r} (subjobs[{j}]); "
                   "use one subjob per HQ table and add the fields to it")
        else:
            hq_tables[key] = (i, s)
        tkey = (s.direction, s.target.key())
        if tkey in targets and not (duplicate_source and s.channel_table is None):
            j, other = targets[tkey]
            _issue(out, (*path, "channel_table"),
                   f"channel table {str(s.target)!r} is already the {s.direction.value} table of subjob {other.id!r} "
                   f"(subjobs[{j}])")
        else:
            targets[tkey] = (i, s)
        _fields(out, path, s)
        _upload_rules(out, path, s)
        if parts.kafka is not None and parts.hq is not None:
            try:
                topics.table_topic(parts.kafka.topic_prefix, parts.hq.name,
                                   s.hq_table.schema or dialect.default_schema, s.hq_table.name)
            except ValueError as exc:
                _issue(out, (*path, "hq_table"), str(exc))


def _references(out: list[Issue], path: tuple[str | int, ...], ids: Iterable[str], noun: str, declared: set[str],
                known: list[str], hint: str = "", check: Callable[[str], str | None] | None = None) -> None:
    """Each id of ``ids`` (at ``path[k]``) listed once and declared (else ``unknown``, with a suggestion from
    ``known`` and ``hint``); ``check(id)`` may name a further problem. Placeholders are skipped."""
    seen: set[str] = set()
    for k, ref in enumerate(ids):
        if ref.startswith(PLACEHOLDER):
            continue
        if ref.casefold() in seen:
            _issue(out, (*path, k), f"{noun} {ref!r} is listed twice")
        elif ref.casefold() not in declared:
            _issue(out, (*path, k), f"unknown {noun} {ref!r}{_suggest(ref, known)}{hint}")
        elif check is not None and (problem := check(ref)):
            _issue(out, (*path, k), problem)
        seen.add(ref.casefold())


def _job_direction(jobs: dict[str, Job], direction: Direction, message: str) -> Callable[[str], str | None]:
    """A ``_references`` check: ``message`` (ids are topic ids, never braces) formatted with the job's ``job``
    id, ``dir``ection and ``a_dir`` when the job runs the other direction."""
    def check(job_id: str) -> str | None:
        job = jobs.get(job_id.casefold())
        if job is None or job.direction is direction:
            return None
        return message.format(job=job.id, dir=job.direction.value, a_dir=_a(job.direction.value))
    return check


def _fields(out: list[Issue], path: tuple[str | int, ...], s: Subjob) -> None:
    hq_seen: dict[str, str] = {}
    lists: list[tuple[tuple[str | int, ...], tuple[FieldMap, ...]]] = [((*path, "fields"), s.fields)]
    if s.extension is not None:
        lists.append(((*path, "extension", "fields"), s.extension.fields))
    for lpath, fields in lists:
        channel_seen: dict[str, str] = {}
        for j, f in enumerate(fields):
            fpath = (*lpath, j)
            for attr, value in (("name", f.name), ("to_name", f.to_name)):
                if value is not None and value.upper() == DATAAREAID:
                    _issue(out, (*fpath, attr),
                           f"{value!r} is mapped explicitly; remove it, cdx adds DATAAREAID automatically")
            if f.name.upper() == DATAAREAID:
                continue
            if f.name.casefold() in hq_seen:
                _issue(out, (*fpath, "name"),
                       f"field {f.name!r} is mapped twice (also at {hq_seen[f.name.casefold()]})")
                continue
            hq_seen[f.name.casefold()] = format_path(fpath)
            cname = f.channel_name.casefold()
            if cname in channel_seen:
                _issue(out, (*fpath, "to_name" if f.to_name else "name"),
                       f"channel column {f.channel_name!r} is the target of two fields (also {channel_seen[cname]})")
            else:
                channel_seen[cname] = format_path(fpath)


def _upload_rules(out: list[Issue], path: tuple[str | int, ...], s: Subjob) -> None:
    counter_path = (*path, "replication_counter")
    if s.direction is Direction.UPLOAD:
        if s.replication_counter is None:
            _issue(out, counter_path,
                   "an upload subjob needs a replication_counter: the channel column (e.g. "
                   "REPLICATIONCOUNTERFROMORIGIN) whose growth marks rows not yet uploaded")
        else:
            columns = {c.casefold() for _, c in s.channel_columns()}
            if s.extension is not None:
                columns |= {c.casefold() for _, c in s.extension.channel_columns()}
            if s.replication_counter.casefold() not in columns:
                _issue(out, counter_path,
                       f"replication counter {s.replication_counter!r} is not one of the subjob's channel columns; "
                       "add it to fields (HQ keeps it to know what it has received)")
        if s.channel_filter is not None:
            _issue(out, (*path, "channel_filter"), "only download subjobs can be filtered per channel")
        if s.source_topic is not None:
            _issue(out, (*path, "source_topic"), "only download subjobs read a table topic; remove source_topic")
    elif s.replication_counter is not None:
        _issue(out, counter_path, "only upload subjobs have a replication counter; remove it")
    ext = s.extension
    if ext is None:
        return
    epath = (*path, "extension")
    if ext.target.key() == s.target.key():
        _issue(out, (*epath, "table"), f"extension table {str(ext.target)!r} is the subjob's own channel table")
    if ext.override_target and s.direction is Direction.DOWNLOAD:
        _issue(out, (*epath, "override_target"),
               "override_target applies to upload subjobs only; for a download subjob set channel_table instead")
    own = {c.casefold() for _, c in s.channel_columns()}
    for k, col in enumerate(ext.key):
        if col.casefold() not in own:
            _issue(out, (*epath, "key", k),
                   f"key column {col!r} is not one of the subjob's channel columns; map it in fields")


# -- schedules and filters ------------------------------------------------------------------------
def _check_schedules(out: list[Issue], parts: Parts) -> None:
    jobs = {j.id.casefold(): j for _, j in parts.jobs}
    known_groups = [g.id for _, g in parts.groups]
    for i, sched in parts.schedules:
        path: tuple[str | int, ...] = ("distribution_schedules", i)
        _references(out, (*path, "jobs"), sched.jobs, "job", parts.declared_jobs, [j.id for j in jobs.values()],
                    check=_job_direction(jobs, sched.direction, f"{sched.direction.value} schedule {sched.id!r}"
                                         " runs {dir} job {job!r}; put it in {a_dir} schedule"))
        _references(out, (*path, "channel_data_groups"), sched.channel_data_groups, "channel data group",
                    parts.declared_groups, known_groups)


def _check_filters(out: list[Issue], parts: Parts) -> None:
    for i, s in parts.subjobs:
        flt = s.channel_filter
        if flt is None or s.direction is not Direction.DOWNLOAD:
            continue
        if flt.column.casefold() not in {f.name.casefold() for f in s.all_fields()}:
            _issue(out, ("subjobs", i, "channel_filter", "column"),
                   f"filter column {flt.column!r} is not one of the subjob's fields; map it in fields")
        jobs = {j.casefold() for j in s.scheduled_by}
        groups = {
            g.casefold()
            for _, sched in parts.schedules
            if sched.direction is Direction.DOWNLOAD and jobs & {j.casefold() for j in sched.jobs}
            for g in sched.channel_data_groups
        }
        for gi, group in parts.groups:
            if group.id.casefold() not in groups:
                continue
            for ci, channel in enumerate(group.channels):
                if flt.attribute not in channel.attributes:
                    _issue(out, ("channel_data_groups", gi, "channels", ci, "attributes"),
                           f"channel {channel.id!r} receives subjob {s.id!r}, filtered on attribute "
                           f"{flt.attribute!r}, but has no attribute {flt.attribute!r}")


def _check_extension_schemas(out: list[Issue], parts: Parts) -> None:
    """Extension tables live only in the extension schemas (CDX: ``ext``), never in a protected one."""
    allowed = parts.extensions.schemas
    for i, s in parts.subjobs:
        if s.extension is not None and not parts.extensions.is_extension_schema(s.extension.target.schema):
            _issue(out, ("subjobs", i, "extension", "table"),
                   f"extension table {str(s.extension.target)!r} is not in an extension schema; put it in "
                   f"{' or '.join(allowed)} (extensions.schemas lists the schemas extension tables may use)")
