"""``cdx channel init``: create channel tables and the state table before any record arrives.

Each target table's columns come from its **latest routed writer schema**: the last schema named
``routed.<schema>.<table>.RoutedChange`` (and ``...Key``) on the schemas topic; for targets not
found there (Schema Registry mode) the group topic is scanned for the last record of the table.
A table with no schema yet is reported as pending: the sink creates it on its first record.
Idempotent: existing tables only gain missing columns; existing rows and state are untouched.
All or nothing across the databases given: each must open, and an existing table whose primary key
or column types conflict with its records (``cdx.connectors.sink.conflicts``) is refused, before any
database is changed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cdx.codec import AvroSchema, SchemaStore, make_codec
from cdx.codec.naming import namespace_for
from cdx.connectors.sink.conflicts import TableConflict, conflicts
from cdx.connectors.sink.records import Shape, shape_of
from cdx.connectors.sink.spec import SinkSpec, sink_specs, target_key
from cdx.connectors.sink.state import StateStore
from cdx.connectors.sink.tables import TableManager, column_info
from cdx.connectors.sink.tools import database_of, open_database
from cdx.dialects import Connection, get_dialect
from cdx.dialects.reach import missing_sqlite_file
from cdx.errors import DatabaseUnreachable, RetriableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.routed import ROUTED_NAMESPACE_ROOT, ROUTED_VALUE_NAMES
from cdx.topics import schemas_topic
from cdx.topology.root import Topology

_GENERATION = re.compile(r"\.g\d+$")
Schemas = dict[tuple[str, str], tuple[AvroSchema, AvroSchema]]
"""Target (case-folded) -> (key schema, value schema)."""


@dataclass
class InitReport:
    owner_id: str
    database: str
    created: list[str] = field(default_factory=list)
    added_columns: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Tables with no routed schema yet (created by the sink on first record)."""


def _target_namespaces(specs: Iterable[SinkSpec]) -> dict[str, tuple[str, str]]:
    return {namespace_for(f"{ROUTED_NAMESPACE_ROOT}.{schema}.{table}").casefold(): target_key(schema, table)
            for spec in specs for schema, table in spec.table_order}


def _classify(schema: AvroSchema, namespaces: dict[str, tuple[str, str]]) -> tuple[tuple[str, str], bool] | None:
    """(target, is_key) for a routed key or value schema of a wanted target, else None."""
    name = schema.name or ""
    ns, _, last = name.rpartition(".")
    if last != "Key" and last not in ROUTED_VALUE_NAMES:
        return None
    target = namespaces.get(_GENERATION.sub("", ns).casefold())
    return (target, last == "Key") if target is not None else None


def latest_schemas(topology: Topology, specs: list[SinkSpec]) -> Schemas:
    """Latest routed key/value writer schemas of every target table of ``specs`` (see module doc)."""
    k = topology.kafka
    config = client_config(k.bootstrap_servers, k.security)
    namespaces = _target_namespaces(specs)
    keys: dict[tuple[str, str], AvroSchema] = {}
    values: dict[tuple[str, str], AvroSchema] = {}
    try:
        topic = schemas_topic(k.topic_prefix)
        if partitions_of(config, topic):
            for msg in read_to_end(config, topic):
                raw = msg.value()
                if raw is None:
                    continue
                try:
                    schema = AvroSchema.of(raw.decode("utf-8"))
                except Exception:
                    continue
                found = _classify(schema, namespaces)
                if found is not None:
                    (keys if found[1] else values)[found[0]] = schema
        missing = set(namespaces.values()) - (set(keys) & set(values))
        # Only a Schema Registry (or Connect JSON's embedded schemas) keeps routed schemas off the
        # schemas topic; with the single-object codec the router publishes them there before any
        # record, so scanning the group topic (its whole length: 20 s for 1M records) could find
        # nothing more.
        if missing and k.record_encoding != "avro":
            codec = make_codec(k.codec_config(), store=SchemaStore(k.bootstrap_servers, topic))
            for group_topic in sorted({s.topic for s in specs}):
                if not partitions_of(config, group_topic):
                    continue
                for msg in read_to_end(config, group_topic):
                    raw_key, raw_value = msg.key(), msg.value()
                    if raw_key is None or raw_value is None:
                        continue
                    ks = codec.writer_schema(group_topic, raw_key, is_key=True)
                    vs = codec.writer_schema(group_topic, raw_value)
                    found = _classify(vs, namespaces)
                    if found is not None and found[0] in missing:
                        keys[found[0]], values[found[0]] = ks, vs
    except TimeoutError as e:
        raise RetriableError(f"Kafka at {k.bootstrap_servers} did not answer in time: {e}") from e
    return {t: (keys[t], values[t]) for t in set(keys) & set(values)}


def init_databases(topology: Topology, owner_ids: Iterable[str] | None = None) -> list[InitReport]:
    """Create the state table and every known target table in each database (see module doc), after
    running the pending extension scripts (``extensions.scripts``), so data never precedes its tables.

    Nothing is written unless every database opens and no existing table conflicts with its
    records (``TableConflict`` listing each table, column, found and expected type)."""
    from cdx.connectors.migrate.fleet import run_pending

    specs = sink_specs(topology, owner_ids)
    run_pending(topology, owner_ids)
    schemas = latest_schemas(topology, specs)
    conns: dict[str, Connection] = {}
    try:
        for spec in specs:  # every database opens (a new SQLite file: can be created) before any changes
            if _new_sqlite_file(spec):
                continue
            conns[spec.owner_id] = open_database(spec)
        problems = [p for spec in specs if spec.owner_id in conns
                    for p in _conflicts(spec, conns[spec.owner_id], schemas)]
        if problems:
            raise TableConflict(f"{len(problems)} channel table(s) conflict with the topology; nothing was written:\n"
                                + "\n".join(f"  {p}" for p in problems) + "\n  alter each table to match, or drop"
                                " (or rename) it so that cdx creates it, then run cdx channel init again")
        reports = []
        for spec in specs:
            if spec.owner_id not in conns:
                conns[spec.owner_id] = open_database(spec)
            reports.append(_init(spec, conns[spec.owner_id], schemas))
        return reports
    finally:
        for conn in conns.values():
            conn.close()


def _new_sqlite_file(spec: SinkSpec) -> bool:
    """True when ``spec`` is a SQLite file that does not exist yet but can be created (opening it would
    create it); a file that cannot be created raises ``DatabaseUnreachable`` now, before any change."""
    missing = missing_sqlite_file(spec.dialect, spec.dsn)
    if missing is None:
        return False
    path = Path(missing).absolute()
    folder = next((p for p in path.parents if p.exists()), Path("/"))
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise DatabaseUnreachable(database_of(spec), f"cannot create {path}: {folder} is not a writable directory",
                                  "create the directory or fix the path in the DSN")
    return True


def _target_shapes(spec: SinkSpec, schemas: Schemas) -> list[tuple[str, str, Shape | None]]:
    found = {t: schemas.get(target_key(*t)) for t in spec.table_order}
    return [(schema, table, shape_of(schema, table, *kv) if kv else None) for (schema, table), kv in found.items()]


def _conflicts(spec: SinkSpec, conn: Connection, schemas: Schemas) -> list[str]:
    """Conflicts of the existing tables of ``spec`` (read only; the transaction is rolled back)."""
    dialect = get_dialect(spec.dialect)
    out = []
    try:
        for schema, table, shape in _target_shapes(spec, schemas):
            if shape is None or not dialect.table_exists(conn, schema, table):
                continue
            keys = {name: i + 1 for i, name in enumerate(shape.key_names)}
            found = dialect.introspect_columns(conn, schema, table, require_primary_key=False)
            expected = [column_info(c, keys.get(c.name, 0)) for c in shape.columns]
            out += [f"{spec.owner_id} {schema}.{table}: {p}"
                    for p in conflicts(dialect, found, expected, shape.key_names)]
    finally:
        conn.rollback()
    return out


def _init(spec: SinkSpec, conn: Connection, schemas: Schemas) -> InitReport:
    dialect = get_dialect(spec.dialect)
    report = InitReport(spec.owner_id, spec.redacted_dsn())
    tables = TableManager(dialect, spec.extension_schemas)
    with dialect.transaction(conn):
        StateStore(dialect, spec.topic).ensure(conn)
        for schema, table, shape in _target_shapes(spec, schemas):
            if shape is None:
                report.pending.append(f"{schema}.{table}")
                continue
            if dialect.table_exists(conn, schema, table):
                report.existing.append(f"{schema}.{table}")
            tables.ensure(conn, [shape])
    report.created, report.added_columns = tables.created, tables.added
    return report
