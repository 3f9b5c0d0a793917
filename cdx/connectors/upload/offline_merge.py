"""Merging offline register rows into a channel database, one POS transaction at a time.

Contract (inside the caller's channel-database transaction)
- Rows are grouped by **POS transaction**: the primary-key columns every upload table of the
  register shares (:func:`transaction_key`; DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID for
  the sample), or row by row when they share none.
- A transaction none of whose rows the channel holds is inserted (extension rows first: the upload
  joins them). One whose rows are all there with the same content is a duplicate (skipped). Any
  other is a **conflict**: nothing of it is written; it is returned for a dead letter.
- Only the tables this poll brings rows of are counted: a table whose subjob was added later
  brings rows of transactions whose other tables were merged long ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cdx.connectors.upload.offline_plan import OfflinePlan, OfflineRow, Side
from cdx.connectors.upload.positions import Gap, UploadPosition
from cdx.connectors.upload.records import dlq_record
from cdx.dialects import Connection, Dialect
from cdx.verify import normalise


@dataclass
class TableWork:
    """One plan's share of a poll: the rows to merge and the advanced position stored with them."""

    plan: OfflinePlan
    key: str
    """The position's key in ``cdx_state``: ``<register>/<table>``."""
    position: UploadPosition
    rows: list[OfflineRow]
    closed: list[Gap]
    """Gaps given up by this advance (logged once committed)."""


@dataclass
class Member:
    """One row of a POS transaction: the table side it goes to, its values, its register counter."""

    side: Side
    values: list[Any]
    counter: int


@dataclass
class Conflict:
    """A POS transaction the channel already holds in another version: not merged, dead-lettered."""

    key: dict[str, Any]
    members: list[Member]
    reason: str


@dataclass
class MergeOutcome:
    """Rows inserted, skipped as duplicates, and in conflict (with the conflicting transactions)."""

    inserted: int = 0
    duplicate: int = 0
    conflict: int = 0
    conflicts: list[Conflict] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"inserted": self.inserted, "duplicate": self.duplicate, "conflict": self.conflict}


class TableMerge:
    """Merging rows into one channel table (caller's channel transaction)."""

    def __init__(self, dialect: Dialect, conn: Connection, side: Side) -> None:
        self.d, self.conn, self.side = dialect, conn, side
        d, q, p = dialect, dialect.quote_ident, dialect.placeholder
        target = d.qualified(side.channel_table.schema, side.channel_table.name)
        self.key_idx = [side.names.index(k) for k in side.key]
        self.select = (f"SELECT {d.columns_sql(side.names)} FROM {target} WHERE "
                       + " AND ".join(f"{q(k)} = {p}" for k in side.key))
        names, values = list(side.names), [p] * len(side.names)
        if side.counter is not None and not side.generated:
            names.append(side.counter)
            values.append(f"(SELECT COALESCE(MAX({q(side.counter)}), 0) + 1 FROM {target})")
        self.insert = f"INSERT INTO {target} ({d.columns_sql(names)}) VALUES ({', '.join(values)})"

    def count(self, txn_columns: Sequence[str], txn_key: Sequence[Any]) -> int:
        """Rows of the channel table belonging to a transaction."""
        d, q, p = self.d, self.d.quote_ident, self.d.placeholder
        cur = self.conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {d.qualified(self.side.channel_table.schema, self.side.channel_table.name)}"
                    f" WHERE " + " AND ".join(f"{q(k)} = {p}" for k in txn_columns), [d.encode(v) for v in txn_key])
        return int(cur.fetchone()[0])

    def existing(self, values: Sequence[Any]) -> list[Any] | None:
        cur = self.conn.cursor()
        cur.execute(self.select, [self.d.encode(values[i]) for i in self.key_idx])
        row = cur.fetchone()
        if row is None:
            return None
        return [self.d.decode(c, v) if v is not None else None for c, v in zip(self.side.channel_cols, row,
                                                                              strict=True)]

    def same(self, a: Sequence[Any], b: Sequence[Any]) -> bool:
        return all(normalise(x) == normalise(y) for x, y in zip(a, b, strict=True))

    def add(self, values: Sequence[Any]) -> None:
        self.conn.cursor().execute(self.insert, [self.d.encode(v) for v in values])


def _row_dict(side: Side, values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(side.names, values, strict=True))


def _json(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else normalise(v)


def transaction_key(sides: Sequence[Side]) -> list[str]:
    """The columns identifying one POS transaction across the register's upload tables: the
    primary-key columns they all share (DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID for the
    sample), in the first table's key order. Empty when they share none (rows merge one by one)."""
    if not sides:
        return []
    shared = {k.casefold() for k in sides[0].key}
    for side in sides[1:]:
        shared &= {k.casefold() for k in side.key}
    return [k for k in sides[0].key if k.casefold() in shared]


def group_transactions(work: Sequence[TableWork], txn_cols: list[str]) -> dict[tuple[Any, ...], list[Member]]:
    """The poll's rows by POS transaction (``txn_cols``; by table and key when empty), extension rows
    before their primary row."""
    txns: dict[tuple[Any, ...], list[Member]] = {}
    for w in work:
        plan = w.plan
        for row in w.rows:
            parts: list[tuple[Side | None, list[Any] | None]] = [(plan.ext, row.extension), (plan.primary, row.primary)]
            for side, values in parts:
                if side is None or values is None:
                    continue
                names = [n.casefold() for n in side.names]
                cols = txn_cols or side.key
                tkey = tuple(normalise(values[names.index(k.casefold())]) for k in cols)
                txns.setdefault(tkey if txn_cols else (str(side.channel_table), *tkey), []).append(
                    Member(side, values, row.counter))
    return txns


def merge_transactions(dialect: Dialect, conn: Connection, sides: Sequence[Side],
                       txns: dict[tuple[Any, ...], list[Member]], txn_cols: list[str], channel: str) -> MergeOutcome:
    """Insert, skip or refuse each transaction (see the module docstring), in the caller's transaction."""
    merges = {id(x): TableMerge(dialect, conn, x) for x in sides}
    out = MergeOutcome()
    for members in txns.values():
        first = members[0]
        names = [n.casefold() for n in first.side.names]
        cols = txn_cols or first.side.key
        raw_key = [first.values[names.index(k.casefold())] for k in cols]
        brought = {id(m.side) for m in members}
        present = sum(merges[id(x)].count(cols, raw_key) for x in (sides if txn_cols else [first.side])
                      if id(x) in brought)
        if present == 0:
            for m in members:  # extension rows first: the upload joins them
                merges[id(m.side)].add(m.values)
            out.inserted += len(members)
            continue
        have = [merges[id(m.side)].existing(m.values) for m in members]
        if present == len(members) and all(h is not None and merges[id(m.side)].same(h, m.values)
                                           for h, m in zip(have, members, strict=True)):
            out.duplicate += len(members)
            continue
        out.conflict += len(members)
        out.conflicts.append(Conflict(dict(zip(cols, raw_key, strict=True)), members,
                                      f"channel {channel} already holds a different transaction with this"
                                      f" key ({present} rows there); the register's version is not merged"))
    return out


def conflict_letters(conflicts: Sequence[Conflict], register: str,
                     channel: str) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """One dead letter per conflicting transaction, with all its register rows (grouped by table)."""
    records = []
    for c in conflicts:
        first = next((m for m in c.members if not m.side.extension), c.members[0])
        rows: dict[str, list[dict[str, Any]]] = {}
        for m in c.members:
            rows.setdefault(str(m.side.channel_table), []).append(
                {k: _json(v) for k, v in _row_dict(m.side, m.values).items()})
        records.append(dlq_record(
            "offline", c.reason, error_kind="conflict", channel=channel, table=str(first.side.channel_table),
            counter=first.counter,
            row={**_row_dict(first.side, first.values), "_register": register, "_transaction": c.key,
                 "_rows": rows}))
    return records
