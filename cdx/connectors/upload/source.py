"""Reading upload tables from a channel (or offline-register) database.

:class:`UploadSource` is the read plan of one upload subjob in one database: which table is read
(the subjob's channel table, or its extension table with ``override_target``), which columns
(under their HQ names), the replication counter, and, for an extension with
``override_target: false``, the LEFT JOIN that brings the extension's columns along with the
primary row. :meth:`UploadSource.read` returns the rows of given counter ranges (gap re-reads)
and above a counter (the tail), ordered by counter.

:func:`read_snapshot` runs one poll's reads in one consistent snapshot and gives the database's
**commit horizon**, which lets a gap be closed as soon as it is provably permanent:

- PostgreSQL (REPEATABLE READ): ``token`` = the server clock (microseconds) when the snapshot was
  taken, ``passed`` = just below the start of the oldest transaction still open in the database
  (``pg_stat_activity.xact_start`` of client backends and background workers), or the clock when
  none is. A transaction holding a counter in a gap took it before the higher counter that opened
  the gap was handed out, so it started before the snapshot that saw the gap: once every
  transaction that started by then has ended (``passed >= token``) the gap is permanent. This
  covers a transaction that took its counter (``nextval``) but has **no transaction id yet**,
  which the snapshot's ``xmin`` does not (it only counts transactions that have one). Sessions of
  other roles whose state the uploader may not see (grant it ``pg_read_all_stats``) and prepared
  transactions make ``passed`` 0: gaps then close by timeout only.
- SQLite: one writer at a time, so a counter is committed (or rolled back) before any higher one
  can commit: every gap is already permanent.
- Other databases: no horizon; gaps close by timeout only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdx.cleanup import quietly
from cdx.codec import Column
from cdx.codec import LogicalType as CodecType
from cdx.dialects import ColumnInfo, Connection, Dialect, LogicalType, get_dialect, key_columns
from cdx.errors import CdxError, ConfigError, RetriableError
from cdx.topology import DATAAREAID, Subjob, TableRef
from cdx.topology.model import Database, FieldMap

log = logging.getLogger("cdx.upload")

ALWAYS = 1 << 62
"""Horizon ``passed`` value of a database whose gaps are always permanent (SQLite)."""
_RANGES_PER_QUERY = 200
_DEFAULT_DECIMAL = (38, 16)


# ------------------------------------------------------------------------------ connections
def open_database(db: Database, *, read_snapshots: bool = False) -> Connection:
    """Connect to a channel or register database; any failure to reach it is ``RetriableError``.

    A SQLite file that does not exist is unreachable (never created empty here). PostgreSQL gets a
    5 s connect timeout and, with ``read_snapshots``, REPEATABLE READ (see :func:`read_snapshot`).
    """
    dialect = get_dialect(db.dialect.value)
    dsn = db.dsn
    if db.dialect.value == "sqlite":
        path = db.sqlite_path
        if path and path != ":memory:" and not Path(path).exists():
            raise RetriableError(f"database {db.redacted()} is unreachable: {path} does not exist")
    elif db.dialect.value == "postgresql":
        from psycopg.conninfo import make_conninfo

        from cdx.dialects.postgresql import libpq_dsn

        dsn = make_conninfo(libpq_dsn(dsn), connect_timeout=5)
    try:
        conn = dialect.connect(dsn)
    except Exception as exc:
        raise RetriableError(f"database {db.redacted()} is unreachable: {exc}") from exc
    if read_snapshots and db.dialect.value == "postgresql":
        import psycopg

        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def db_error(dialect: Dialect, exc: BaseException, what: str) -> CdxError:
    """A database exception as a typed cdx error (retriable, skippable or fatal)."""
    if isinstance(exc, CdxError):
        return exc
    return dialect.classify_error(exc)(f"{what}: {exc}")


@contextmanager
def typed_errors(dialect: Dialect, what: str) -> Iterator[None]:
    """Database exceptions raised inside become typed cdx errors (:func:`db_error`); cdx errors pass unchanged."""
    try:
        yield
    except CdxError:
        raise
    except Exception as exc:
        raise db_error(dialect, exc, what) from exc


def close_quietly(conn: Connection | None) -> None:
    if conn is None:
        return
    quietly(conn.rollback, "upload: rolling back the channel read")
    quietly(conn.close, "upload: closing the channel connection")


# ------------------------------------------------------------------------------ snapshots
_PG_HORIZON = """
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
  (SELECT (extract(epoch FROM min(a.xact_start)) * 1000000)::bigint FROM pg_stat_activity AS a
   WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
     AND a.backend_type IN ('client backend', 'background worker')),
  (SELECT count(*) FROM pg_stat_activity AS a WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
     AND a.backend_type IS NULL)
  + (SELECT count(*) FROM pg_prepared_xacts AS p WHERE p.database = current_database())
"""
"""(server clock, start of the oldest other open transaction, both in microseconds since the epoch;
sessions whose details the role may not see (``backend_type`` is hidden too) + prepared transactions)."""


@dataclass(frozen=True)
class Horizon:
    """A snapshot's commit horizon (see the module docstring): ``passed`` None when the database has none."""

    passed: int | None = None
    token: int = 0


@contextmanager
def read_snapshot(dialect: Dialect, conn: Connection) -> Iterator[Horizon]:
    """One poll's reads in one snapshot, with its commit horizon (see the module docstring)."""
    try:
        if dialect.name == "sqlite":
            if not conn.in_transaction:
                conn.execute("BEGIN")
            yield Horizon(ALWAYS)
        elif dialect.name == "postgresql":
            now_us, oldest_us, unknown = conn.execute(_PG_HORIZON).fetchone()
            yield Horizon(0 if unknown else int(oldest_us) - 1 if oldest_us is not None else int(now_us), int(now_us))
        else:
            yield Horizon()
    finally:
        quietly(conn.rollback, "upload: ending the channel read")


# ------------------------------------------------------------------------------ read plans
def select_sql(d: Dialect, table: TableRef, columns: Sequence[str], counter: str, ext: TableRef | None = None,
               join: Sequence[tuple[str, str]] = ()) -> str:
    """``SELECT p.<counter>, <columns> FROM <table> p [LEFT JOIN <ext> e ON p.<a> = e.<b> ...] WHERE {where}
    ORDER BY p.<counter>``, ``{where}`` left to fill (identifiers quoted, values bound)."""
    q = d.quote_ident
    sql_from = f"{d.qualified(table.schema, table.name)} p"
    if ext is not None:
        cond = " AND ".join(f"p.{q(a)} = e.{q(b)}" for a, b in join)
        sql_from += f" LEFT JOIN {d.qualified(ext.schema, ext.name)} e ON {cond}"
    c = f"p.{q(counter)}"
    return f"SELECT {c}, {', '.join(columns)} FROM {sql_from} WHERE {{where}} ORDER BY {c}"


def range_queries(d: Dialect, counter: str, ranges: Sequence[tuple[int, int]]) -> Iterator[tuple[str, list[int]]]:
    """The conditions (with their parameters) selecting the counters of ``ranges`` (inclusive), at most
    ``_RANGES_PER_QUERY`` ranges per query."""
    c, p = f"p.{d.quote_ident(counter)}", d.placeholder
    for start in range(0, len(ranges), _RANGES_PER_QUERY):
        chunk = ranges[start:start + _RANGES_PER_QUERY]
        yield "(" + " OR ".join(f"{c} BETWEEN {p} AND {p}" for _ in chunk) + ")", [v for r in chunk for v in r]


@dataclass(frozen=True)
class SourceColumn:
    """One uploaded column: its HQ name (the record field) and the database column it is read from."""

    hq: str
    column: ColumnInfo
    extension: bool = False


@dataclass
class SourceRow:
    counter: int
    values: dict[str, Any]
    """HQ column name -> value."""
    extension_present: bool | None = None
    """With a joined extension: whether the primary row has an extension row."""
    error: str | None = None
    """Set when the row's values cannot be read as their column types (``values`` then holds them raw)."""


def counter_hq_name(subjob: Subjob) -> str:
    """The HQ column the subjob's replication counter is mapped to."""
    counter = (subjob.replication_counter or "").casefold()
    for f in subjob.all_fields():
        if f.channel_name.casefold() == counter:
            return f.name
    raise ConfigError(f"subjob {subjob.id}: replication counter {subjob.replication_counter!r} is not mapped")


def source_table(subjob: Subjob) -> TableRef:
    """The table an upload subjob reads: its extension table with ``override_target``, else its own."""
    ext = subjob.extension
    return ext.target if ext is not None and ext.override_target else subjob.target


class UploadSource:
    """The read plan of one upload subjob in one database (built by introspecting it)."""

    def __init__(self, dialect: Dialect, conn: Connection, subjob: Subjob) -> None:
        if not subjob.replication_counter:
            raise ConfigError(f"upload subjob {subjob.id} has no replication_counter")
        self.dialect = dialect
        self.subjob = subjob
        self.table = source_table(subjob)
        ext = subjob.extension
        override = ext is not None and ext.override_target
        cols = dialect.introspect_columns(conn, self.table.schema, self.table.name, require_primary_key=False)
        have = {c.name.casefold(): c for c in cols}
        counter = have.get(subjob.replication_counter.casefold())
        if counter is None:
            raise ConfigError(f"upload table {self.table} has no replication counter column "
                              f"{subjob.replication_counter}; add it (an identity column) or fix the subjob")
        self.counter = counter.name
        self.counter_hq = counter_hq_name(subjob)
        self.columns: list[SourceColumn] = []
        self._own_columns(have, override)
        pk = key_columns(cols)
        self.key = [c.hq for c in self.columns if c.column.name in pk] or [self.counter_hq]
        # extension joined to the primary row
        self.ext_table: TableRef | None = None
        self.join: list[tuple[str, str]] = []
        self.ext_marker: ColumnInfo | None = None
        if ext is not None and not override:
            self._join_extension(conn, have, pk)
        self._select = self._select_sql()

    def _own_columns(self, have: dict[str, ColumnInfo], override: bool) -> None:
        """The columns read from the table itself: DATAAREAID when it has one, then the mapped fields
        (with ``override_target``, the extension's too; missing ones are then only logged)."""
        subjob = self.subjob
        wanted = list(subjob.all_fields()) if override else list(subjob.fields)
        if DATAAREAID.casefold() in have:
            self.columns.append(SourceColumn(DATAAREAID, have[DATAAREAID.casefold()]))
        missing = self._add_columns(have, wanted)
        if missing and not override:
            raise ConfigError(f"upload table {self.table} lacks the mapped columns {missing} of subjob {subjob.id}")
        if missing:
            log.warning("%s: extension table %s (override_target) has no %s; they are not uploaded (HQ defaults)",
                        subjob.id, self.table, ", ".join(missing))

    def _join_extension(self, conn: Connection, have: dict[str, ColumnInfo], pk: list[str]) -> None:
        """An extension table read with each primary row (LEFT JOIN on its key, DATAAREAID added when
        both tables have it); ``ConfigError`` for a join or extension column missing."""
        subjob, dialect = self.subjob, self.dialect
        ext = subjob.extension
        assert ext is not None
        self.ext_table = ext.target
        ecols = dialect.introspect_columns(conn, ext.target.schema, ext.target.name, require_primary_key=False)
        ehave = {c.name.casefold(): c for c in ecols}
        join_names = list(ext.key) or pk
        if not join_names:
            raise ConfigError(f"extension {ext.target} of {subjob.id}: no key to join on; set extension.key")
        if DATAAREAID.casefold() in have and DATAAREAID.casefold() in ehave and \
                DATAAREAID.casefold() not in {n.casefold() for n in join_names}:
            join_names = [DATAAREAID, *join_names]
        for name in join_names:
            p, e = have.get(name.casefold()), ehave.get(name.casefold())
            if p is None or e is None:
                raise ConfigError(f"extension {ext.target} of {subjob.id}: join column {name} missing in "
                                  f"{self.table if p is None else ext.target}")
            self.join.append((p.name, e.name))
        self.ext_marker = ehave[self.join[0][1].casefold()]
        emissing = self._add_columns(ehave, ext.fields, ext=True)
        if emissing:
            raise ConfigError(f"extension table {ext.target} lacks the columns {emissing} of subjob {subjob.id}")

    def _add_columns(self, have: dict[str, ColumnInfo], fields: Iterable[FieldMap], ext: bool = False) -> list[str]:
        """Read the ``fields`` found in ``have``; returns the channel names of those missing."""
        missing = []
        for f in fields:
            found = have.get(f.channel_name.casefold())
            if found is None:
                missing.append(f.channel_name)
            else:
                self.columns.append(SourceColumn(f.name, found, ext))
        return missing

    # -------------------------------------------------------------------------- schema
    def codec_columns(self) -> list[Column]:
        """Record columns (HQ names): key columns first, then the others in read order."""
        out = []
        ordered = [c for c in self.columns if c.hq in self.key] + [c for c in self.columns if c.hq not in self.key]
        for c in ordered:
            info = c.column
            extra: dict[str, Any] = {}
            if info.logical_type is LogicalType.DECIMAL:
                p, s = (info.precision, info.scale) if info.precision else _DEFAULT_DECIMAL
                extra = {"precision": p, "scale": s if s is not None else 0}
            elif info.logical_type in (LogicalType.STRING, LogicalType.BYTES) and info.length:
                extra = {"length": info.length}
            out.append(Column(c.hq, CodecType(info.logical_type.value), nullable=True,
                              primary_key=c.hq in self.key, **extra))
        return out

    # -------------------------------------------------------------------------- reading
    def _select_sql(self) -> str:
        d = self.dialect
        parts = [f"{'e' if c.extension else 'p'}.{d.quote_ident(c.column.name)}" for c in self.columns]
        if self.ext_table is not None:
            assert self.ext_marker is not None
            parts.append(f"e.{d.quote_ident(self.ext_marker.name)}")
        return select_sql(d, self.table, parts, self.counter, self.ext_table, self.join)

    def _limit(self, sql: str, limit: int) -> str:
        if self.dialect.name == "sqlserver":
            return f"{sql} OFFSET 0 ROWS FETCH NEXT {int(limit)} ROWS ONLY"
        return f"{sql} LIMIT {int(limit)}"

    def read_tail(self, conn: Connection, above: int, limit: int) -> list[SourceRow]:
        """Rows with counter > ``above``, ascending, at most ``limit``."""
        p = self.dialect.placeholder
        counter = f"p.{self.dialect.quote_ident(self.counter)}"
        return self._run(conn, self._limit(self._select.format(where=f"{counter} > {p}"), limit), [above])

    def read_ranges(self, conn: Connection, ranges: Sequence[tuple[int, int]], limit: int) -> list[SourceRow]:
        """Rows whose counter lies in one of ``ranges`` (inclusive), ascending, at most ``limit``."""
        out: list[SourceRow] = []
        for where, params in range_queries(self.dialect, self.counter, ranges):
            out += self._run(conn, self._limit(self._select.format(where=where), limit - len(out)), params)
            if len(out) >= limit:
                break
        return out

    def next_counter_floor(self, conn: Connection) -> int | None:
        """The highest counter the database has handed out, as far as it can tell: the identity's
        sequence in PostgreSQL when the role may read it, ``sqlite_sequence`` for a SQLite
        ``AUTOINCREMENT`` key, else the highest counter in the table (what SQLite's ``MAX+1`` counters
        continue from). None for an empty table without a sequence."""
        d = self.dialect
        table = d.qualified(self.table.schema, self.table.name)
        cur = conn.cursor()
        if d.name == "sqlite" and cur.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
            row = cur.execute("SELECT seq FROM sqlite_sequence WHERE name = ?",
                              [d.physical_table(self.table.schema, self.table.name)[1]]).fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
        if d.name == "postgresql":
            cur.execute("SELECT CASE WHEN s IS NULL THEN NULL WHEN has_sequence_privilege(s, 'SELECT')"
                        " THEN coalesce(pg_sequence_last_value(s), 0) END"
                        " FROM (SELECT pg_get_serial_sequence(%s, %s)::regclass AS s) AS x", [table, self.counter])
            row = cur.fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
        cur.execute(f"SELECT MAX({d.quote_ident(self.counter)}) FROM {table}", [])
        row = cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _run(self, conn: Connection, sql: str, params: Sequence[Any]) -> list[SourceRow]:
        cur = conn.cursor()
        cur.execute(sql, list(params))
        decode = self.dialect.decode
        cols = self.columns
        joined = self.ext_table is not None
        rows = []
        for raw in cur.fetchall():
            present = (raw[-1] is not None) if joined else None
            try:
                values = {c.hq: (decode(c.column, v) if v is not None else None)
                          for c, v in zip(cols, raw[1:], strict=False)}
            except Exception as exc:  # one malformed row: dead-lettered by the caller, never blocking
                bad = {c.hq: v for c, v in zip(cols, raw[1:], strict=False)}
                rows.append(SourceRow(int(raw[0]), bad, present, f"cannot read the row: {type(exc).__name__}: {exc}"))
                continue
            rows.append(SourceRow(int(raw[0]), values, present))
        return rows
