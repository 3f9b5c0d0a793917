"""What a channel database must hold under a topology, what it holds, and how they differ.

Used by the tests, the demo and the benchmarks to check replication end to end:

>>> report = compare(expected_channel_rows(hq, hq_dialect, topo, "store-0001"),   # doctest: +SKIP
...                  actual_channel_rows(store, store_dialect, topo, "store-0001"))
>>> report.ok, report.summary()                                                   # doctest: +SKIP

Rules (:func:`expected_channel_rows`): for every download subjob reaching the channel's group
(a download job of it runs in a download distribution schedule listing the group), the HQ
table's rows whose ``DATAAREAID`` is one of the group's legal entities (tables without
``DATAAREAID``: every row) and, for a subjob with a ``channel_filter``, whose filter column
equals the channel's attribute (an offline register uses its channel's attributes); projected
to the mapped fields under their channel names, preceded by ``DATAAREAID`` when the HQ table
has it. A download extension adds a table: ``DATAAREAID``, its key columns (``extension.key``,
else the channel table's key) and its fields, filtered like its own table.

Rows are ``{key tuple: row tuple}`` per target ``(schema, table)`` (channel names, as in the
topology), with values as the dialect decodes them. The key is the table's primary key (HQ
primary key under channel names for the expected rows, the channel table's primary key for the
actual ones), or the whole row when there is none. :func:`compare` normalises values first
(numbers of any type by value, bools as 0/1, timestamps to ``timestamp_digits`` fractional
digits, tz-aware timestamps to naive UTC), so different databases compare equal.

Each reader runs in one transaction of its own on the connection it is given (committed at
the end; SQLite's holds the write lock while it reads), so call it with no transaction open.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType, key_columns
from cdx.errors import ConfigError
from cdx.topology import DATAAREAID, Direction, FieldMap, Subjob, TableRef, Topology

__all__ = [
    "Report", "Rows", "TableReport", "Target", "actual_channel_rows", "checksum", "compare",
    "expected_channel_rows", "normalise", "verify_channel",
]

Target = tuple[str, str]
"""``(schema, table)`` of a channel table as the topology names it (``("ax", "INVENTTABLE")``)."""
Rows = dict[tuple[Any, ...], tuple[Any, ...]]
"""``{primary key: row}`` of one table."""

_DECODED = {LogicalType.DECIMAL, LogicalType.BOOL, LogicalType.DATE, LogicalType.TIMESTAMP, LogicalType.UUID}
"""Types whose driver values differ between databases (others normalise alike as read)."""
_LE = DATAAREAID.casefold()
_FETCH = 10_000


@dataclass(frozen=True)
class _Target:
    """One channel table a subjob fills: the HQ columns it takes, in row order, under channel names."""

    table: TableRef
    fields: tuple[FieldMap, ...]
    key: tuple[str, ...] | None = None
    """Channel key columns (extension tables); ``None``: the HQ primary key."""


def _targets(subjob: Subjob, is_key: Callable[[FieldMap], bool] | None = None) -> list[_Target]:
    """The subjob's tables; an extension table without ``key`` takes the fields ``is_key`` picks
    (the channel key, which the router gives the extension table) before its own fields."""
    ext = subjob.extension
    if ext is None:
        return [_Target(subjob.target, subjob.fields)]
    wanted = {k.casefold() for k in ext.key}
    keys = tuple(f for f in subjob.fields
                 if (f.channel_name.casefold() in wanted if ext.key else is_key is not None and is_key(f)))
    return [_Target(subjob.target, subjob.fields),
            _Target(ext.target, keys + ext.fields, tuple(f.channel_name for f in keys) if ext.key else None)]


def _named_in(names: set[str], field: FieldMap) -> bool:
    return field.channel_name.casefold() in names


def _key(table: TableRef) -> Target:
    return (table.schema or "", table.name)


def _columns(conn: Connection, dialect: Dialect, table: TableRef) -> dict[str, ColumnInfo] | None:
    """Columns by case-folded name, or ``None`` when the table does not exist."""
    if not dialect.table_exists(conn, table.schema, table.name):
        return None
    cols = dialect.introspect_columns(conn, table.schema, table.name, require_primary_key=False)
    return {c.name.casefold(): c for c in cols}


def _read(conn: Connection, dialect: Dialect, table: TableRef, columns: Sequence[ColumnInfo | None]
          ) -> Iterator[tuple[Any, ...]]:
    """Rows of ``columns`` (``None``: a missing column, read as NULL), decoded."""
    present = [c for c in columns if c is not None]
    if not present:
        return
    decode = dialect.decode
    slots = []
    i = 0
    for c in columns:
        slots.append(None if c is None else (i, c, c.logical_type in _DECODED))
        i += c is not None
    cur = conn.cursor()
    cur.execute(f"SELECT {dialect.columns_sql([c.name for c in present])}"
                f" FROM {dialect.qualified(table.schema, table.name)}")
    while batch := cur.fetchmany(_FETCH):
        for raw in batch:
            yield tuple(None if s is None else (decode(s[1], raw[s[0]]) if s[2] else raw[s[0]]) for s in slots)


def _hq_subjob_rows(hq_conn: Connection, hq_dialect: Dialect, topology: Topology, subjob: Subjob,
                    channel_id: str, entities: set[str]) -> dict[Target, Rows]:
    cols = _columns(hq_conn, hq_dialect, subjob.hq_table)
    if cols is None:
        raise ConfigError(f"HQ table {subjob.hq_table} of subjob {subjob.id} does not exist")

    def col(name: str) -> ColumnInfo:
        found = cols.get(name.casefold())
        if found is None:
            raise ConfigError(f"HQ table {subjob.hq_table} has no column {name} (subjob {subjob.id})")
        return found

    has_le = _LE in cols
    wanted = ([col(DATAAREAID)] if has_le else []) + [col(f.name) for f in subjob.all_fields()]
    pos = {c.name.casefold(): i for i, c in reversed(list(enumerate(wanted)))}
    value = topology.filter_value(subjob, channel_id)
    fpos = pos[col(subjob.channel_filter.column).name.casefold()] if subjob.channel_filter else None
    hq_key = [k.casefold() for k in key_columns(list(cols.values()))]
    plans: list[tuple[Target, list[int], list[int] | None, Rows]] = []
    for t in _targets(subjob, lambda f: f.name.casefold() in hq_key):
        idx = ([0] if has_le else []) + [pos[col(f.name).name.casefold()] for f in t.fields]
        names = ([_LE] if has_le else []) + [f.channel_name.casefold() for f in t.fields]
        if t.key is not None:
            key_names = ([_LE] if has_le else []) + [k.casefold() for k in t.key]
        else:
            to_channel = {f.name.casefold(): f.channel_name.casefold() for f in t.fields} | {_LE: _LE}
            key_names = [to_channel.get(k, "") for k in hq_key]
        kidx = [names.index(k) for k in key_names] if hq_key and all(k in names for k in key_names) else None
        plans.append((_key(t.table), idx, kidx, {}))
    for row in _read(hq_conn, hq_dialect, subjob.hq_table, wanted):
        if has_le and (row[0] is None or str(row[0]).strip().casefold() not in entities):
            continue
        if fpos is not None and str(row[fpos]) != value:
            continue
        for _, idx, kidx, out in plans:
            projected = tuple(row[i] for i in idx)
            out[projected if kidx is None else tuple(projected[i] for i in kidx)] = projected
    return {target: out for target, _, _, out in plans}


def _group_subjobs(topology: Topology, channel_id: str) -> tuple[set[str], list[Subjob]]:
    group = topology.group_of_channel(channel_id)
    if group is None:
        raise ConfigError(f"no channel or offline register {channel_id!r} in the topology")
    return ({e.strip().casefold() for e in group.legal_entities},
            topology.subjobs_for_group(group.id, Direction.DOWNLOAD))


def expected_channel_rows(hq_conn: Connection, hq_dialect: Dialect, topology: Topology,
                          channel_id: str) -> dict[Target, Rows]:
    """What the channel (or offline register) database must hold, per target table (see module doc).

    Raises ``ConfigError`` for an unknown channel, a missing HQ table or column.
    """
    entities, subjobs = _group_subjobs(topology, channel_id)
    out: dict[Target, Rows] = {}
    with hq_dialect.transaction(hq_conn):
        for s in subjobs:
            for target, rows in _hq_subjob_rows(hq_conn, hq_dialect, topology, s, channel_id, entities).items():
                out.setdefault(target, {}).update(rows)
    return out


def actual_channel_rows(channel_conn: Connection, channel_dialect: Dialect, topology: Topology,
                        channel_id: str) -> dict[Target, Rows]:
    """The same tables and columns read from the channel database (``DATAAREAID`` when the channel
    table has it); a missing table reads as empty, a missing column as NULL."""
    _, subjobs = _group_subjobs(topology, channel_id)
    out: dict[Target, Rows] = {}
    with channel_dialect.transaction(channel_conn):
        for s in subjobs:
            ext_cols = _columns(channel_conn, channel_dialect, s.extension.target) if s.extension else None
            ext_key = {k.casefold() for k in key_columns(list(ext_cols.values()))} if ext_cols else set()
            for t in _targets(s, functools.partial(_named_in, ext_key)):
                rows = out.setdefault(_key(t.table), {})
                cols = _columns(channel_conn, channel_dialect, t.table)
                if cols is None:
                    continue
                wanted = ([cols[_LE]] if _LE in cols else []) + \
                    [cols.get(f.channel_name.casefold()) for f in t.fields]
                names = [c.name.casefold() if c else "" for c in wanted]
                pk = [k.casefold() for k in key_columns(list(cols.values()))]
                kidx = [names.index(k) for k in pk] if pk and all(k in names for k in pk) else None
                for row in _read(channel_conn, channel_dialect, t.table, wanted):
                    rows[row if kidx is None else tuple(row[i] for i in kidx)] = row
    return out


# -- comparison -------------------------------------------------------------------------
def _number(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _int(value: Any, digits: int) -> str:
    return str(int(value))


def _decimal(value: Any, digits: int) -> str:
    if isinstance(value, float):
        value = Decimal(repr(value))
    return _number(format(value, "f")) if value.is_finite() else str(value)


def _timestamp(value: dt.datetime, digits: int) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if digits < 6:
        unit = 10 ** (6 - max(0, digits))
        value = value.replace(microsecond=value.microsecond // unit * unit)
    return value.isoformat(sep=" ", timespec="microseconds")


_BY_TYPE: dict[type, Any] = {int: _int, bool: _int, float: _decimal, Decimal: _decimal, dt.datetime: _timestamp,
                             dt.date: lambda v, _: v.isoformat(), uuid.UUID: lambda v, _: str(v)}
"""Normalisers by exact type (datetime before date: subclasses are matched in this order by ``_other``)."""


def _other(value: Any, digits: int) -> Any:
    for kind, norm in _BY_TYPE.items():
        if isinstance(value, kind):
            return norm(value, digits)
    return bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)


def normalise(value: Any, timestamp_digits: int = 6) -> Any:
    """A database-independent form of ``value``: numbers (int, float, Decimal, bool) as their
    canonical decimal text, timestamps as naive UTC ISO text truncated to ``timestamp_digits``,
    dates ISO, uuids lower-case, bytes hex; strings and ``None`` as they are."""
    if value is None or type(value) is str:
        return value
    return _BY_TYPE.get(type(value), _other)(value, timestamp_digits)


def _norm_row(row: tuple[Any, ...], digits: int) -> tuple[Any, ...]:
    get = _BY_TYPE.get
    return tuple(v if v is None or type(v) is str else get(type(v), _other)(v, digits) for v in row)


def _norm_rows(rows: Rows, digits: int) -> dict[tuple[Any, ...], tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """``{normalised key: (key, normalised row)}``."""
    return {_norm_row(k, digits): (k, _norm_row(r, digits)) for k, r in rows.items()}


def _digest(normalised_rows: Iterator[tuple[Any, ...]]) -> str:
    h = hashlib.sha256()
    for line in sorted(repr(r) for r in normalised_rows):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def checksum(rows: Rows, timestamp_digits: int = 6) -> str:
    """Order-independent sha256 of a table's normalised rows."""
    return _digest(_norm_row(r, timestamp_digits) for r in rows.values())


@dataclass
class TableReport:
    """How one table differs. Keys and rows are as given (not normalised)."""

    table: Target
    expected_count: int
    actual_count: int
    missing: list[tuple[Any, ...]] = field(default_factory=list)
    extra: list[tuple[Any, ...]] = field(default_factory=list)
    differing: list[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=list)
    """``(key, expected row, actual row)``."""
    expected_checksum: str = ""
    actual_checksum: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing) and self.expected_checksum == self.actual_checksum


@dataclass
class Report:
    """Per-table differences; ``ok`` when every table matches."""

    tables: dict[Target, TableReport]

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables.values())

    def problems(self) -> list[TableReport]:
        return [t for t in self.tables.values() if not t.ok]

    def summary(self, limit: int = 3) -> str:
        """One line per table (``ok`` or counts), with up to ``limit`` example keys per kind."""
        lines = []
        for (schema, table), t in sorted(self.tables.items()):
            name = f"{schema}.{table}" if schema else table
            if t.ok:
                lines.append(f"{name}: ok ({t.actual_count} rows, {t.actual_checksum[:12]})")
                continue
            lines.append(f"{name}: expected {t.expected_count} rows, found {t.actual_count}; {len(t.missing)} missing"
                         f" {t.missing[:limit]}, {len(t.extra)} extra {t.extra[:limit]}, {len(t.differing)}"
                         f" differing {t.differing[:limit]}")
        return "\n".join(lines)


def _compare_table(table: Target, expected: Rows, actual: Rows, digits: int) -> TableReport:
    exp, act = _norm_rows(expected, digits), _norm_rows(actual, digits)
    missing = sorted(exp.keys() - act.keys(), key=repr)
    extra = sorted(act.keys() - exp.keys(), key=repr)
    differing = sorted((k for k in exp.keys() & act.keys() if exp[k][1] != act[k][1]), key=repr)
    return TableReport(
        table, len(expected), len(actual),
        missing=[exp[k][0] for k in missing], extra=[act[k][0] for k in extra],
        differing=[(exp[k][0], expected[exp[k][0]], actual[act[k][0]]) for k in differing],
        expected_checksum=_digest(v[1] for v in exp.values()), actual_checksum=_digest(v[1] for v in act.values()))


def compare(expected: dict[Target, Rows], actual: dict[Target, Rows], *, timestamp_digits: int = 6) -> Report:
    """Compare per table (the union of both sides' tables; an absent table counts as empty)."""
    tables = sorted(expected.keys() | actual.keys())
    return Report({t: _compare_table(t, expected.get(t, {}), actual.get(t, {}), timestamp_digits) for t in tables})


def verify_channel(hq_conn: Connection, hq_dialect: Dialect, channel_conn: Connection, channel_dialect: Dialect,
                   topology: Topology, channel_id: str, *, timestamp_digits: int = 6) -> Report:
    """``compare(expected_channel_rows(...), actual_channel_rows(...))`` for one channel or register."""
    return compare(expected_channel_rows(hq_conn, hq_dialect, topology, channel_id),
                   actual_channel_rows(channel_conn, channel_dialect, topology, channel_id),
                   timestamp_digits=timestamp_digits)
