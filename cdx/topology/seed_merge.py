"""CDX's merge rules for seed data: a base file, then extension files, applied in order.

- A ``<Job>`` with a new id is added; with a known id its description (and IsUpload) is updated.
- A ``<Subjob>`` with a new id needs ``AxTableName``; a new subjob on a table another subjob
  already maps is an error (extend that subjob instead, as CDX requires).
- A ``<Subjob>`` with a known id extends it: ``AxTableName`` is inferred (if given it must
  match), its ``<Field>`` s are added, ``<ScheduledByJobs>`` (if present) *replace* its jobs
  (list the old job too to add rather than move), ``ReplicationCounterFieldName`` and
  ``Description`` override. A ``TargetTableName``/``TargetTableSchema`` naming a table other
  than the subjob's own channel table declares its extension table (``OverrideTarget``
  applies to it); the fields of that element go to the extension table.
- An explicit ``DataAreaId`` field is an error (CDX adds it), as is an id repeated in one file.

The merge may start from an existing topology's jobs and subjobs (``cdx seed import --into``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdx.topology.identifiers import TableRef, check_identifier, check_topic_id
from cdx.topology.issues import Issue, SeedError
from cdx.topology.model import DATAAREAID, DEFAULT_CHANNEL_SCHEMA, DEFAULT_EXTENSION_SCHEMA, Direction
from cdx.topology.root import Topology
from cdx.topology.seed_xml import Origin, SeedField, SeedFile, SeedJob, SeedSubjob


@dataclass
class _Extension:
    table: TableRef
    override: bool
    fields: list[SeedField] = field(default_factory=list)
    key: tuple[str, ...] = ()


@dataclass
class _Job:
    id: str
    description: str | None
    is_upload: bool | None
    origin: Origin


@dataclass
class _Subjob:
    id: str
    hq_table: TableRef
    channel_table: TableRef | None
    is_upload: bool
    origin: Origin
    fields: list[SeedField] = field(default_factory=list)
    scheduled_by: list[tuple[str, Origin]] = field(default_factory=list)
    counter: str | None = None
    extension: _Extension | None = None
    description: str | None = None
    channel_filter: dict[str, str] | None = None

    @property
    def target(self) -> TableRef:
        ref = self.channel_table or TableRef(None, self.hq_table.name)
        return ref.with_default_schema(DEFAULT_CHANNEL_SCHEMA)


class SeedMerger:
    """Apply seed files in order; :meth:`result` returns topology ``jobs`` and ``subjobs`` data."""

    def __init__(self, base: Topology | None = None, base_source: str = "topology.yaml",
                 extension_schemas: tuple[str, ...] | None = None) -> None:
        self.extension_schemas = extension_schemas or (base.extensions.schemas if base is not None
                                                       else (DEFAULT_EXTENSION_SCHEMA,))
        self.jobs: dict[str, _Job] = {}
        self.subjobs: dict[str, _Subjob] = {}
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        if base is not None:
            self._load_base(base, base_source)

    def _load_base(self, base: Topology, source: str) -> None:
        origin = Origin(source, None)
        for job in base.jobs:
            self.jobs[job.id.casefold()] = _Job(job.id, job.description, job.direction is Direction.UPLOAD, origin)
        for s in base.subjobs:
            ext = None
            if s.extension is not None:
                ext = _Extension(s.extension.table, s.extension.override_target,
                                 [SeedField(f.name, f.to_name, origin) for f in s.extension.fields], s.extension.key)
            self.subjobs[s.id.casefold()] = _Subjob(
                s.id, s.hq_table, s.channel_table, s.is_upload, origin,
                [SeedField(f.name, f.to_name, origin) for f in s.fields],
                [(j, origin) for j in s.scheduled_by], s.replication_counter, ext, s.description,
                s.channel_filter.model_dump() if s.channel_filter else None,
            )

    def _error(self, origin: Origin, message: str) -> None:
        self.errors.append(Issue("", origin.line, message, origin.file))

    # -- applying files ------------------------------------------------------------------------
    def apply(self, seed: SeedFile) -> None:
        """Apply one parsed file (errors accumulate in :attr:`errors`)."""
        self.warnings.extend(seed.warnings)
        for job in seed.jobs:
            self._job(job, seed)
        for sub in seed.subjobs:
            self._subjob(sub, seed)

    def _job(self, job: SeedJob, seed: SeedFile) -> None:
        try:
            check_topic_id(job.id, "job id")
        except ValueError as exc:
            self._error(job.origin, str(exc))
            return
        known = self.jobs.get(job.id.casefold())
        if known is None:
            self.jobs[job.id.casefold()] = _Job(job.id, job.description, job.is_upload, job.origin)
        elif known.origin.file == seed.path:
            self._error(job.origin,
                        f"job {job.id!r} is declared twice in this file (first at line {known.origin.line})")
        else:
            known.description = job.description or known.description
            if job.is_upload is not None:
                known.is_upload = job.is_upload

    def _subjob(self, sub: SeedSubjob, seed: SeedFile) -> None:
        try:
            check_topic_id(sub.id, "subjob id")
            for value, what in ((sub.replication_counter, "ReplicationCounterFieldName"),
                                (sub.target_table, "TargetTableName"), (sub.target_schema, "TargetTableSchema")):
                if value is not None:
                    check_identifier(value, what)
            hq = TableRef.parse(sub.ax_table) if sub.ax_table else None
        except ValueError as exc:
            self._error(sub.origin, str(exc))
            return
        known = self.subjobs.get(sub.id.casefold())
        if known is not None and known.origin.file == seed.path:
            self._error(sub.origin, f"subjob {sub.id!r} is declared twice in this file (first at line "
                                    f"{known.origin.line})")
        elif known is not None:
            self._extend(known, sub, hq)
        elif hq is None:
            self._error(sub.origin, f"AxTableName is required: no earlier file defines subjob {sub.id!r}, so this "
                                    "is a new subjob (to extend one, use its exact Id)")
        else:
            self._create(sub, hq, seed)

    def _table_owner(self, hq: TableRef) -> _Subjob | None:
        def same(a: TableRef, b: TableRef) -> bool:
            schemas_match = a.schema is None or b.schema is None or a.schema.casefold() == b.schema.casefold()
            return a.name.casefold() == b.name.casefold() and schemas_match

        return next((s for s in self.subjobs.values() if same(s.hq_table, hq)), None)

    def _create(self, sub: SeedSubjob, hq: TableRef, seed: SeedFile) -> None:
        owner = self._table_owner(hq)
        if owner is not None:
            self._error(sub.origin, f"new subjob {sub.id!r} maps table {str(hq)!r}, already mapped by subjob "
                                    f"{owner.id!r} ({owner.origin}); extend that subjob with Id=\"{owner.id}\"")
            return
        if sub.override_target is not None:
            self._error(sub.origin, "OverrideTarget only applies when extending an existing upload subjob")
        schema = sub.target_schema or seed.channel_db_schema
        table = TableRef(schema, sub.target_table or hq.name) if (schema or sub.target_table) else None
        if table is not None and table.key(DEFAULT_CHANNEL_SCHEMA) == (DEFAULT_CHANNEL_SCHEMA, hq.name.casefold()):
            table = None  # the default: ax.<AxTableName>
        new = _Subjob(sub.id, hq, table, bool(sub.is_upload), sub.origin,
                      counter=sub.replication_counter, description=sub.description)
        new.scheduled_by = list(sub.scheduled_by or [])
        self.subjobs[sub.id.casefold()] = new
        self._add_fields(new, new.fields, sub.fields)

    def _extend(self, known: _Subjob, sub: SeedSubjob, hq: TableRef | None) -> None:
        if hq is not None and hq.name.casefold() != known.hq_table.name.casefold():
            self._error(sub.origin, f"AxTableName {str(hq)!r} differs from {str(known.hq_table)!r} of subjob "
                                    f"{known.id!r} ({known.origin}); an extension cannot change a subjob's table")
            return
        if sub.is_upload is not None and sub.is_upload != known.is_upload:
            self._error(sub.origin, f"IsUpload={str(sub.is_upload).lower()} contradicts subjob {known.id!r} "
                                    f"({known.origin})")
            return
        if sub.scheduled_by is not None:
            known.scheduled_by = list(sub.scheduled_by)
        known.counter = sub.replication_counter or known.counter
        known.description = sub.description or known.description
        target = self._extension_target(known, sub)
        if target is None or target.key() == known.target.key():
            if sub.override_target is not None and target is None:
                self._error(sub.origin, "OverrideTarget needs TargetTableName/TargetTableSchema naming the "
                                        "extension table")
            self._add_fields(known, known.fields, sub.fields)
            return
        schema = target.schema or DEFAULT_EXTENSION_SCHEMA
        if schema.casefold() not in {x.casefold() for x in self.extension_schemas}:
            self._error(sub.origin, f"extension table {schema}.{target.name} of subjob {known.id!r} is not in the "
                                    f"extension schema: set TargetTableSchema=\"{self.extension_schemas[0]}\" (CDX "
                                    "supports extension tables only there)")
            return
        if known.extension is None:
            known.extension = _Extension(target, bool(sub.override_target))
        elif known.extension.table.key(DEFAULT_EXTENSION_SCHEMA) != target.key(DEFAULT_EXTENSION_SCHEMA):
            self._error(sub.origin, f"subjob {known.id!r} already has extension table {str(known.extension.table)!r}; "
                                    "a subjob has at most one")
            return
        elif sub.override_target is not None:
            known.extension.override = sub.override_target
        self._add_fields(known, known.extension.fields, sub.fields)

    @staticmethod
    def _extension_target(known: _Subjob, sub: SeedSubjob) -> TableRef | None:
        if sub.target_table is None and sub.target_schema is None:
            return None
        return TableRef(sub.target_schema or known.target.schema, sub.target_table or known.target.name)

    def _add_fields(self, owner: _Subjob, into: list[SeedField], fields: list[SeedField]) -> None:
        existing = {f.name.casefold(): f for f in owner.fields}
        if owner.extension is not None:
            existing.update({f.name.casefold(): f for f in owner.extension.fields})
        for f in fields:
            try:
                check_identifier(f.name, "field Name")
                if f.to_name is not None:
                    check_identifier(f.to_name, "field ToName")
            except ValueError as exc:
                self._error(f.origin, str(exc))
                continue
            if DATAAREAID in (f.name.upper(), (f.to_name or "").upper()):
                self._error(f.origin, f"field {f.name!r} maps DATAAREAID explicitly; remove it, cdx adds "
                                      "DATAAREAID automatically (CDX rejects it too)")
                continue
            first = existing.get(f.name.casefold())
            if first is None:
                into.append(f)
                existing[f.name.casefold()] = f
            elif (first.to_name or first.name).casefold() == (f.to_name or f.name).casefold():
                self.warnings.append(Issue("", f.origin.line, f"field {f.name!r} is already mapped in subjob "
                                                              f"{owner.id!r} ({first.origin}); ignored", f.origin.file))
            else:
                self._error(f.origin, f"field {f.name!r} is already mapped to {first.to_name or first.name!r} in "
                                      f"subjob {owner.id!r} ({first.origin}); a field is mapped once")

    # -- result ----------------------------------------------------------------------------------
    def _finish(self) -> None:
        for s in self.subjobs.values():
            if not s.fields:
                self._error(s.origin, f"subjob {s.id!r} maps no fields: list them with <Field Name=\"...\"/>")
            if not s.scheduled_by:
                self._error(s.origin, f"subjob {s.id!r} is not scheduled by any job: add <ScheduledByJobs>")
            for job_id, origin in s.scheduled_by:
                if job_id.casefold() not in self.jobs:
                    self._error(origin, f"subjob {s.id!r} is scheduled by unknown job {job_id!r}: declare "
                                        f"<Job Id=\"{job_id}\"/>")
            if s.is_upload and not s.counter:
                self._error(s.origin, f"upload subjob {s.id!r} needs ReplicationCounterFieldName (e.g. "
                                      "ReplicationCounterFromOrigin)")
        for job in self.jobs.values():
            if job.is_upload is None:
                subs = [s for s in self.subjobs.values()
                        if job.id.casefold() in {j.casefold() for j, _ in s.scheduled_by}]
                job.is_upload = bool(subs) and all(s.is_upload for s in subs)

    def result(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(jobs, subjobs)`` as topology data; raise :class:`SeedError` if any file was invalid."""
        self._finish()
        if self.errors:
            raise SeedError(self.errors)
        jobs = [_job_data(j) for j in self.jobs.values()]
        return jobs, [_subjob_data(s) for s in self.subjobs.values()]

    def origin_of(self, section: str, index: int) -> Origin | None:
        """Where ``jobs[index]`` / ``subjobs[index]`` of :meth:`result` came from."""
        items: list[Any] = list(self.jobs.values() if section == "jobs" else self.subjobs.values())
        return items[index].origin if 0 <= index < len(items) else None


def _data(**values: Any) -> dict[str, Any]:
    """``values`` in order, without the ``None`` ones (left out of the topology)."""
    return {k: v for k, v in values.items() if v is not None}


def _job_data(job: _Job) -> dict[str, Any]:
    return _data(id=job.id, description=job.description or None,
                 direction="upload" if job.is_upload else "download")


def _fields_data(fields: list[SeedField]) -> list[Any]:
    return [f.name if f.to_name is None else {"name": f.name, "to_name": f.to_name} for f in fields]


def _subjob_data(s: _Subjob) -> dict[str, Any]:
    ext = s.extension
    return _data(
        id=s.id, description=s.description or None, direction="upload" if s.is_upload else None,
        hq_table=str(s.hq_table), channel_table=None if s.channel_table is None else str(s.channel_table),
        fields=_fields_data(s.fields), scheduled_by=[j for j, _ in s.scheduled_by],
        replication_counter=s.counter or None,
        extension=None if ext is None else _data(table=str(ext.table), override_target=ext.override or None,
                                                 key=list(ext.key) or None, fields=_fields_data(ext.fields)),
        channel_filter=dict(s.channel_filter) if s.channel_filter else None)
