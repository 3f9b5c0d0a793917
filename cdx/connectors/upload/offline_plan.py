"""How an upload subjob's rows move from an offline register database to its channel database.

- :class:`Side`: one table on both sides: the columns copied (those both tables have, the
  replication counter excluded: the channel database assigns its own) and the business key (the
  channel table's primary key, which the register table must have).
- :class:`OfflinePlan`: the subjob's primary table and, for a joined extension (``override_target:
  false``), its extension table, read together (LEFT JOIN on the extension key) by counter.
  Identifiers are quoted by the dialect; counters are bound, never formatted into the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdx.connectors.upload.positions import UploadPosition
from cdx.connectors.upload.source import range_queries, select_sql, source_table
from cdx.dialects import ColumnInfo, Connection, Dialect, key_columns
from cdx.errors import ConfigError
from cdx.topology import Subjob, TableRef


@dataclass
class OfflineRow:
    """One register row read: its counter, the primary table's values, the extension's (None: no row)."""

    counter: int
    primary: list[Any]
    extension: list[Any] | None


def counter_generated(dialect: Dialect, conn: Connection, table: TableRef, column: str) -> bool:
    """Whether the database fills ``column`` itself (identity, default, SQLite rowid alias)."""
    if dialect.name == "sqlite":
        _, name = dialect.physical_table(table.schema, table.name)
        rows = conn.execute("SELECT name, type, dflt_value, pk FROM pragma_table_info(?)", (name,)).fetchall()
        pks = [r for r in rows if r[3]]
        for n, typ, default, pk in rows:
            if n.casefold() == column.casefold():
                rowid = pk and len(pks) == 1 and str(typ).upper() == "INTEGER"
                return bool(rowid or default is not None)
        return False
    if dialect.name == "postgresql":
        row = conn.execute("SELECT is_identity, column_default FROM information_schema.columns WHERE table_schema = %s"
                           " AND table_name = %s AND column_name = %s",
                           (table.schema or "public", table.name, column)).fetchone()
        return bool(row and (row[0] == "YES" or row[1] is not None))
    return True


@dataclass
class Side:
    """One table on both sides: the columns copied (shared, counter excluded) and the business key."""

    channel_table: TableRef
    offline_cols: list[ColumnInfo]
    channel_cols: list[ColumnInfo]
    key: list[str]
    counter: str | None
    """The channel table's replication counter column (assigned by the channel database), if any."""
    generated: bool
    extension: bool = False

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.channel_cols]


class OfflinePlan:
    """How one upload subjob's rows move from a register database to its channel database."""

    def __init__(self, subjob: Subjob, off_d: Dialect, off: Connection, ch_d: Dialect, ch: Connection) -> None:
        assert subjob.replication_counter
        self.subjob = subjob
        self.table = source_table(subjob)
        self.off_d = off_d
        counter = subjob.replication_counter
        self.primary = self._side(self.table, counter, off_d, off, ch_d, ch)
        off_cols = {c.name.casefold(): c for c in off_d.introspect_columns(off, self.table.schema, self.table.name,
                                                                           require_primary_key=False)}
        oc = off_cols.get(counter.casefold())
        if oc is None:
            raise ConfigError(f"offline table {self.table} has no replication counter {counter}")
        self.counter = oc.name
        ext = subjob.extension
        self.ext: Side | None = None
        self.join: list[tuple[str, str]] = []
        if ext is not None and not ext.override_target:
            self.ext = self._side(ext.target, counter, off_d, off, ch_d, ch)
            self.ext.extension = True
            names = list(ext.key) or self.primary.key
            pcols = {c.name.casefold(): c.name for c in self.primary.offline_cols}
            ecols = {c.name.casefold(): c.name for c in self.ext.offline_cols}
            for n in names:
                if n.casefold() not in pcols or n.casefold() not in ecols:
                    raise ConfigError(f"cannot join {ext.target} to {self.table} on {n}: missing in the register")
                self.join.append((pcols[n.casefold()], ecols[n.casefold()]))
        q = off_d.quote_ident
        parts = [f"p.{q(c.name)}" for c in self.primary.offline_cols]
        parts += [f"e.{q(c.name)}" for c in self.ext.offline_cols] if self.ext is not None else []
        self.sql = select_sql(off_d, self.table, parts, self.counter, self.ext.channel_table if self.ext else None,
                              self.join)

    @staticmethod
    def _side(table: TableRef, counter: str, off_d: Dialect, off: Connection, ch_d: Dialect, ch: Connection) -> Side:
        ocols = off_d.introspect_columns(off, table.schema, table.name, require_primary_key=False)
        ccols = ch_d.introspect_columns(ch, table.schema, table.name, require_primary_key=False)
        key = key_columns(ccols)
        if not key:
            raise ConfigError(f"channel table {table} has no primary key: offline rows cannot be merged by"
                              " business key")
        by_name = {c.name.casefold(): c for c in ccols}
        ch_counter = by_name.get(counter.casefold())
        shared_off, shared_ch = [], []
        for c in ocols:
            mine = by_name.get(c.name.casefold())
            if mine is None or (ch_counter is not None and mine.name == ch_counter.name):
                continue
            shared_off.append(c)
            shared_ch.append(mine)
        missing = [k for k in key if k.casefold() not in {c.name.casefold() for c in shared_ch}]
        if missing:
            raise ConfigError(f"register table {table} lacks the business key columns {missing}")
        generated = counter_generated(ch_d, ch, table, ch_counter.name) if ch_counter is not None else True
        ch.rollback()
        return Side(table, shared_off, shared_ch, key, ch_counter.name if ch_counter else None, generated)

    def read(self, conn: Connection, pos: UploadPosition) -> list[OfflineRow]:
        """Every new row (the open gaps' counters and those above the high one), decoded. No limit:
        every row of a register transaction that became visible is read in the same snapshot."""
        d = self.off_d
        out: list[OfflineRow] = []
        tail = (f"p.{d.quote_ident(self.counter)} > {d.placeholder}", [pos.high])
        np = len(self.primary.offline_cols)
        for where, params in [*range_queries(d, self.counter, [(g.start, g.end) for g in pos.gaps]), tail]:
            cur = conn.cursor()
            cur.execute(self.sql.format(where=where), params)
            for raw in cur.fetchall():
                prim = [d.decode(col, v) if v is not None else None
                        for col, v in zip(self.primary.offline_cols, raw[1:1 + np], strict=True)]
                ext = None
                if self.ext is not None:
                    evals = raw[1 + np:]
                    if any(v is not None for v in evals):
                        ext = [d.decode(col, v) if v is not None else None
                               for col, v in zip(self.ext.offline_cols, evals, strict=True)]
                out.append(OfflineRow(int(raw[0]), prim, ext))
        return out
