"""Offline registers -> their channel database, exactly once (``cdx channel offline-sync``).

A POS register that cannot reach its channel database writes its sales to its own offline
database. This process copies them into the channel database when it can; from there the
channel upload takes them to HQ like any other row.

Contract
- Per register and upload subjob, the offline database's upload table is read by replication
  counter with the same gap-tracking position as the channel upload
  (:mod:`cdx.connectors.upload.positions`), in one snapshot; a joined extension row (``override_target:
  false``) is read with its primary row and copied with it, in the same channel transaction.
- Rows are merged into the channel database by **business key** (the channel table's primary
  key, e.g. DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID [, LINENUM]), every column the two
  tables share except the replication counter, which the channel database assigns itself
  (identity; or ``MAX + 1`` under SQLite's write lock when the column is a plain one). A key
  already present with the same content is a duplicate (skipped); with **different content** it
  is a conflict: never overwritten, logged and sent to the dead-letter topic.
- The register's position is stored in the **channel** database's ``cdx_state`` (namespace
  ``cdx-offline-sync``, key ``<register>/<table>``) in the same transaction as the rows, so a crash
  never copies a row twice nor skips one.
- An unreachable channel database is retried with backoff (its registers wait; other channels
  go on); an unreachable register database delays that register only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer

from cdx.connectors.upload import metrics
from cdx.connectors.upload.plan import offline_subjobs_for
from cdx.connectors.upload.positions import UploadPosition, resume
from cdx.connectors.upload.records import dlq_record, produce_and_flush
from cdx.connectors.upload.reload import reload_offline_sync
from cdx.connectors.upload.source import ReadSnapshot, close_quietly, db_error, open_database, source_table
from cdx.dialects import ColumnInfo, Connection, Dialect, get_dialect, key_columns
from cdx.errors import CdxError, ConfigError, FatalError, RetriableError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.topics import dlq_topic
from cdx.topology import Subjob, TableRef, Topology
from cdx.topology.live import LiveTopology
from cdx.topology.model import Channel, OfflineRegister
from cdx.verify import normalise

log = logging.getLogger("cdx.upload.offline")

NAMESPACE = "cdx-offline-sync"
COMPONENT = "offline-sync"


@dataclass
class SyncOptions:
    poll_interval: float = 1.0
    batch_size: int = 5000
    gap_grace: float = 5.0
    gap_timeout: float = 600.0
    max_backoff: float = 30.0


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
class _Side:
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


class _Plan:
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
        self.ext: _Side | None = None
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
        frm = f"{off_d.qualified(self.table.schema, self.table.name)} p"
        if self.ext is not None:
            parts += [f"e.{q(c.name)}" for c in self.ext.offline_cols]
            cond = " AND ".join(f"p.{q(a)} = e.{q(b)}" for a, b in self.join)
            et = self.ext.channel_table
            frm += f" LEFT JOIN {off_d.qualified(et.schema, et.name)} e ON {cond}"
        c = f"p.{q(self.counter)}"
        self.sql = f"SELECT {c}, {', '.join(parts)} FROM {frm} WHERE {{where}} ORDER BY {c}"

    @staticmethod
    def _side(table: TableRef, counter: str, off_d: Dialect, off: Connection, ch_d: Dialect, ch: Connection) -> _Side:
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
        return _Side(table, shared_off, shared_ch, key, ch_counter.name if ch_counter else None, generated)

    def read(self, conn: Connection, pos: UploadPosition) -> list[tuple[int, list[Any], list[Any] | None]]:
        """``(counter, primary values, extension values or None)`` of every new row, decoded. No limit:
        every row of a register transaction that became visible is read in the same snapshot."""
        d, p = self.off_d, self.off_d.placeholder
        c = f"p.{d.quote_ident(self.counter)}"
        out: list[tuple[int, list[Any], list[Any] | None]] = []
        ranges = [(g.start, g.end) for g in pos.gaps]
        queries = [(" OR ".join(f"{c} BETWEEN {p} AND {p}" for _ in chunk), [v for r in chunk for v in r])
                   for chunk in (ranges[k:k + 200] for k in range(0, len(ranges), 200))]
        queries.append((f"{c} > {p}", [pos.high]))
        np = len(self.primary.offline_cols)
        for where, params in queries:
            cur = conn.cursor()
            cur.execute(self.sql.format(where=f"({where})"), params)
            for raw in cur.fetchall():
                prim = [d.decode(col, v) if v is not None else None
                        for col, v in zip(self.primary.offline_cols, raw[1:1 + np], strict=True)]
                ext = None
                if self.ext is not None:
                    evals = raw[1 + np:]
                    if any(v is not None for v in evals):
                        ext = [d.decode(col, v) if v is not None else None
                               for col, v in zip(self.ext.offline_cols, evals, strict=True)]
                out.append((int(raw[0]), prim, ext))
        return out


class _Merge:
    """Merging rows into one channel table (caller's channel transaction)."""

    def __init__(self, dialect: Dialect, conn: Connection, side: _Side) -> None:
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


def _row_dict(side: _Side, values: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(side.names, values, strict=True))


def _json(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else normalise(v)


def transaction_key(sides: Sequence[_Side]) -> list[str]:
    """The columns identifying one POS transaction across the register's upload tables: the
    primary-key columns they all share (DATAAREAID, CHANNEL, STORE, TERMINAL, TRANSACTIONID for the
    sample), in the first table's key order. Empty when they share none (rows merge one by one)."""
    if not sides:
        return []
    shared = {k.casefold() for k in sides[0].key}
    for side in sides[1:]:
        shared &= {k.casefold() for k in side.key}
    return [k for k in sides[0].key if k.casefold() in shared]


class RegisterSync:
    """One register's state: its database connection, positions and plans."""

    def __init__(self, register: OfflineRegister) -> None:
        self.register = register
        self.id = register.id
        self.dialect = get_dialect(register.database.dialect.value)
        self.conn: Connection | None = None
        self.plans: list[_Plan] = []
        self.positions: dict[str, UploadPosition] = {}
        self.retry_at = 0.0
        self.backoff = 0.5

    def close(self) -> None:
        close_quietly(self.conn)
        self.conn = None
        self.plans = []


class ChannelOfflineSync:
    """Syncs every offline register of one channel into its channel database (a thread)."""

    def __init__(self, topology: Topology, channel: Channel, registers: Sequence[OfflineRegister],
                 options: SyncOptions, stop: threading.Event, dlq: Producer | None, dlq_name: str) -> None:
        self.topology = topology
        self.channel = channel
        self.options = options
        self._stop = stop
        self.subjobs = offline_subjobs_for(topology, channel.id)
        self.registers = [RegisterSync(r) for r in registers]
        self.dialect = get_dialect(channel.database.dialect.value)
        self.conn: Connection | None = None
        self.dlq = dlq
        self.dlq_topic = dlq_name
        self.error: BaseException | None = None

    def run(self) -> None:
        backoff = 0.5
        try:
            while not self._stop.is_set():
                try:
                    if self.conn is None:
                        self.conn = open_database(self.channel.database)
                        with self.dialect.transaction(self.conn):
                            self.dialect.ensure_state_table(self.conn)
                    moved = self.sync_once()
                    backoff = 0.5
                except FatalError as exc:
                    if not isinstance(exc, ConfigError):
                        raise
                    self._channel_down(exc, backoff, error=True)
                    backoff = min(backoff * 2, self.options.max_backoff)
                    continue
                except RetriableError as exc:
                    self._channel_down(exc, backoff, error=False)
                    backoff = min(backoff * 2, self.options.max_backoff)
                    continue
                if not moved:
                    self._stop.wait(self.options.poll_interval)
        except BaseException as exc:
            self.error = exc
            log.error("channel %s: offline sync stopped: %s", self.channel.id, exc)
            raise
        finally:
            close_quietly(self.conn)
            for r in self.registers:
                r.close()

    def _channel_down(self, exc: BaseException, backoff: float, *, error: bool) -> None:
        (log.error if error else log.warning)("channel %s database: %s; retrying in %.1fs", self.channel.id, exc,
                                              backoff)
        close_quietly(self.conn)
        self.conn = None
        for r in self.registers:
            r.plans = []
        self._stop.wait(backoff)

    def sync_once(self) -> int:
        """One pass over the channel's registers; returns rows copied (+ conflicts)."""
        total = 0
        for reg in self.registers:
            if self._stop.is_set():
                break
            if time.monotonic() < reg.retry_at:
                continue
            try:
                total += self._sync_register(reg)
                reg.backoff = 0.5
            except _ChannelTrouble as exc:
                reg.close()
                raise exc.typed from exc
            except (RetriableError, ConfigError) as exc:
                metrics.OFFLINE_ERRORS.labels(reg.id).inc()
                log.warning("register %s: %s; retrying in %.1fs", reg.id, exc, reg.backoff)
                reg.close()
                reg.retry_at = time.monotonic() + reg.backoff
                reg.backoff = min(reg.backoff * 2, self.options.max_backoff)
        return total

    def _sync_register(self, reg: RegisterSync) -> int:
        assert self.conn is not None
        ch_d, ch = self.dialect, self.conn
        if reg.conn is None:
            reg.conn = open_database(reg.register.database, read_snapshots=True)
        if not reg.plans:
            try:
                reg.plans = [_Plan(s, reg.dialect, reg.conn, ch_d, ch) for s in self.subjobs]
                state = ch_d.read_state(ch, NAMESPACE)
                ch.rollback()
            except BaseException as exc:
                reg.plans = []
                typed = _typed(reg.dialect, exc, f"register {reg.id} set-up")
                if isinstance(typed, RetriableError):
                    raise _ChannelTrouble(typed) from exc  # either side may be down: reconnect both
                raise typed from exc
            reg.positions = {}
            for plan in reg.plans:
                key = f"{reg.id}/{plan.table}"
                stored = UploadPosition.decode(state[key]) if key in state else None
                reg.positions[key] = resume(stored, plan.counter)
        # read the register database in one snapshot
        opts = self.options
        now = int(time.time() * 1000)
        work = []
        try:
            with ReadSnapshot(reg.dialect, reg.conn).open() as snap:
                for plan in reg.plans:
                    key = f"{reg.id}/{plan.table}"
                    pos = reg.positions[key].copy()
                    rows = plan.read(reg.conn, pos)
                    adv = pos.advance([r[0] for r in rows], now_ms=now, horizon_token=snap.token,
                                      horizon_passed=snap.passed, grace_ms=int(opts.gap_grace * 1000),
                                      timeout_ms=int(opts.gap_timeout * 1000))
                    if adv.changed:
                        wanted = set(adv.publish)
                        work.append((plan, key, pos, [r for r in rows if r[0] in wanted], adv.closed))
        except BaseException as exc:
            raise _typed(reg.dialect, exc, f"register {reg.id} database") from exc
        if not work:
            return 0
        # merge into the channel database by transaction, positions in the same transaction
        sides = [x for plan in reg.plans for x in (plan.ext, plan.primary) if x is not None]
        txn_cols = transaction_key(sides)
        txns: dict[tuple[Any, ...], list[tuple[_Side, list[Any], int]]] = {}
        for plan, _key, _pos, rows, _closed in work:
            for counter, pvals, evals in rows:
                parts: list[tuple[_Side | None, list[Any] | None]] = [(plan.ext, evals), (plan.primary, pvals)]
                for side, values in parts:
                    if side is None or values is None:
                        continue
                    names = [n.casefold() for n in side.names]
                    cols = txn_cols or side.key
                    tkey = tuple(normalise(values[names.index(k.casefold())]) for k in cols)
                    txns.setdefault(tkey if txn_cols else (str(side.channel_table), *tkey), []).append(
                        (side, values, counter))
        results: dict[str, int] = {"inserted": 0, "duplicate": 0, "conflict": 0}
        conflicts: list[tuple[dict[str, Any], list[tuple[_Side, list[Any], int]], str]] = []
        try:
            with ch_d.transaction(ch):
                merges = {id(x): _Merge(ch_d, ch, x) for x in sides}
                for members in txns.values():
                    first_side, first_values, _ = members[0]
                    names = [n.casefold() for n in first_side.names]
                    cols = txn_cols or first_side.key
                    raw_key = [first_values[names.index(k.casefold())] for k in cols]
                    # only the tables this poll brings rows of: a table whose subjob was added later
                    # brings the rows of transactions whose other tables were merged long ago
                    brought = {id(side) for side, _, _ in members}
                    present = sum(merges[id(x)].count(cols, raw_key) for x in (sides if txn_cols else [first_side])
                                  if id(x) in brought)
                    if present == 0:
                        for side, values, _ in members:  # extension rows first: the upload joins them
                            merges[id(side)].add(values)
                        results["inserted"] += len(members)
                        continue
                    have = [merges[id(side)].existing(values) for side, values, _ in members]
                    if present == len(members) and all(
                            h is not None and merges[id(side)].same(h, values)
                            for h, (side, values, _) in zip(have, members, strict=True)):
                        results["duplicate"] += len(members)
                        continue
                    results["conflict"] += len(members)
                    conflicts.append((dict(zip(cols, raw_key, strict=True)), members,
                                      f"channel {self.channel.id} already holds a different transaction with this"
                                      f" key ({present} rows there); the register's version is not merged"))
                for _plan, key, pos, _rows, _closed in work:
                    ch_d.write_state(ch, NAMESPACE, {key: pos.encode().decode()})
                self._dead_letters(reg.id, conflicts)
        except CdxError as exc:
            if isinstance(exc, RetriableError):
                raise _ChannelTrouble(exc) from exc
            raise
        except BaseException as exc:
            raise _ChannelTrouble(_typed(ch_d, exc, f"channel {self.channel.id} database")) from exc
        for plan, key, pos, _rows, closed in work:
            reg.positions[key] = pos
            for gap in closed:
                log.warning("register %s, %s: counters %d..%d never appeared; skipped", reg.id, plan.table, gap.start,
                            gap.end)
        for result, n in results.items():
            if n:
                metrics.OFFLINE_ROWS.labels(reg.id, result).inc(n)
        for ckey, cmembers, reason in conflicts:
            log.error("register %s, transaction %s (%d rows): %s; sent to the dead-letter topic", reg.id, ckey,
                      len(cmembers), reason)
        if results["inserted"] or results["duplicate"]:
            log.info("register %s: %d rows copied to channel %s (%d duplicates, %d in conflict)", reg.id,
                     results["inserted"], self.channel.id, results["duplicate"], results["conflict"])
        return sum(results.values()) + sum(len(w[4]) for w in work)

    def _dead_letters(self, register: str,
                      conflicts: list[tuple[dict[str, Any], list[tuple[_Side, list[Any], int]], str]]) -> None:
        """One dead letter per conflicting transaction, with all its register rows."""
        if not conflicts:
            return
        if self.dlq is None:
            raise RetriableError("no dead-letter producer for offline-sync conflicts")
        records = []
        for tkey, members, reason in conflicts:
            first_side, first_values, counter = next((m for m in members if not m[0].extension), members[0])
            rows: dict[str, list[dict[str, Any]]] = {}
            for side, values, _ in members:
                rows.setdefault(str(side.channel_table), []).append(
                    {k: _json(v) for k, v in _row_dict(side, values).items()})
            records.append(dlq_record(
                COMPONENT, reason, channel=self.channel.id, table=str(first_side.channel_table), counter=counter,
                row={**_row_dict(first_side, first_values), "_register": register, "_transaction": tkey,
                     "_rows": rows}))
        produce_and_flush(self.dlq, self.dlq_topic, records)
        metrics.DEAD_LETTERS.labels(COMPONENT).inc(len(records))


class _ChannelTrouble(Exception):
    def __init__(self, typed: CdxError) -> None:
        super().__init__(str(typed))
        self.typed = typed


def _typed(dialect: Dialect, exc: BaseException, what: str) -> CdxError:
    err = db_error(dialect, exc, what)
    if isinstance(err, RetriableError | ConfigError):
        return err
    return RetriableError(str(err))


def syncing_channels(topology: Topology, channels: list[str] | None = None) -> list[Channel]:
    """Channels with offline registers and upload subjobs (all, or those named); ``ConfigError`` for others."""
    wanted = {c.casefold() for c in channels or []}
    out = [c.channel for c in topology.channels()
           if c.channel.offline_registers and offline_subjobs_for(topology, c.channel.id)
           and (not wanted or c.channel.id.casefold() in wanted)]
    unknown = wanted - {c.id.casefold() for c in out}
    if unknown:
        raise ConfigError(f"channels {sorted(unknown)} are unknown or have no offline registers to sync")
    return out


class OfflineSync:
    """Runs one :class:`ChannelOfflineSync` thread per channel that has offline registers."""

    def __init__(self, topology: Topology, channels: list[str] | None = None,
                 options: SyncOptions | None = None) -> None:
        self.topology = topology
        self.options = options or SyncOptions()
        self._stop = threading.Event()
        self.requested = channels
        self.channels = syncing_channels(topology, channels)
        self.live: LiveTopology | None = None
        """Set by ``cdx channel offline-sync``: ``run`` takes new revisions (``reload``)."""
        self.threads: dict[str, threading.Thread] = {}
        k = topology.kafka
        self.base_config = client_config(k.bootstrap_servers, k.security)
        self.dlq_topic = dlq_topic(k.topic_prefix)
        self.dlq: Producer | None = None
        self.workers: list[ChannelOfflineSync] = []

    def setup(self) -> None:
        ensure_topics(self.base_config, [TopicSpec(self.dlq_topic, 1, self.topology.kafka.replication_factor)])
        self.dlq = Producer(producer_config(self.base_config))
        self.workers = [self.worker(self.topology, c) for c in self.channels]

    def worker(self, topology: Topology, channel: Channel) -> ChannelOfflineSync:
        return ChannelOfflineSync(topology, channel, channel.offline_registers, self.options, threading.Event(),
                                  self.dlq, self.dlq_topic)

    def stop(self) -> None:
        self._stop.set()
        for w in self.workers:
            w._stop.set()

    def start(self, worker: ChannelOfflineSync) -> None:
        if self._stop.is_set():
            worker._stop.set()
        t = threading.Thread(target=self._guard, args=(worker,), name=f"offline-{worker.channel.id}", daemon=True)
        self.threads[worker.channel.id] = t
        t.start()

    def reload(self, topology: Topology) -> None:
        """Take a new topology revision (``cdx.connectors.upload.reload.reload_offline_sync``)."""
        reload_offline_sync(self, topology, syncing_channels)

    def run(self) -> None:
        if not self.workers:
            self.setup()
        for w in self.workers:
            self.start(w)
        while any(t.is_alive() for t in self.threads.values()) or (self.live is not None
                                                                     and not self._stop.is_set()):
            if self.live is not None and not self._stop.is_set():
                self.live.offer(self.reload)
            for t in list(self.threads.values()):
                t.join(0.2)
            if not self.threads:
                self._stop.wait(0.5)
            if any(w.error is not None for w in self.workers):
                self.stop()
        if self.dlq is not None:
            self.dlq.flush(10)
        failed = [w for w in self.workers if w.error is not None]
        if failed:
            err = failed[0].error
            raise err if isinstance(err, FatalError) else FatalError(f"offline sync stopped: {err}")

    @staticmethod
    def _guard(worker: ChannelOfflineSync) -> None:
        try:
            worker.run()
        except BaseException as exc:  # the worker recorded it in worker.error; run() stops the others
            log.debug("offline sync worker ended: %r", exc)
