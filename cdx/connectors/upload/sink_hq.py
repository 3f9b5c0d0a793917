"""The HQ upload sink's target: one HQ transaction per batch holding its rows, its offsets and its
upload sessions (a :class:`cdx.stage.contract.Target`).

- ``write(items, offsets)``: inserts the items (:mod:`cdx.connectors.upload.sink_insert`), flushes the
  batch's dead letters to the dead-letter topic, stores the offsets (``cdx_state``, namespace = the
  consumer group, key ``<topic>/<partition>``) and writes one ``Applied`` session per (channel,
  subjob), plus one per channel counting its dead letters. A crash between the flush and the commit
  may repeat a dead letter, never lose one.
- A row HQ refuses (``SkippableError``) fails the write; the loop isolates it and ``dead_letter``
  receives it as :class:`~cdx.connectors.upload.sink_decode.Unusable` (``refused by HQ: ...``).
- After a ``RetriableError`` the connection is opened again on the next ``begin``; ``record_failure``
  writes a ``Failed`` session for a batch that could not be applied, when HQ answers.
- Sessions beyond the retention are pruned whenever HQ is (re)connected and every ``prune_every`` batches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, Producer

from cdx.cleanup import quietly
from cdx.connectors.upload import metrics
from cdx.connectors.upload.post_processing import PostUploadHook
from cdx.connectors.upload.records import dlq_record
from cdx.connectors.upload.sessions import (
    APPLIED,
    FAILED,
    Session,
    ensure_sessions_table,
    insert_sessions,
    prune_sessions,
)
from cdx.connectors.upload.sink_catalog import Catalog
from cdx.connectors.upload.sink_decode import Item, Unusable
from cdx.connectors.upload.sink_insert import Group, group_items, insert_groups
from cdx.connectors.upload.sink_kafka import offset_key
from cdx.connectors.upload.source import db_error, typed_errors
from cdx.dialects import Connection
from cdx.errors import CdxError, RetriableError, SkippableError
from cdx.kafka.control import deliver
from cdx.stage.sessions import utcnow

log = logging.getLogger("cdx.upload.sink")
COMPONENT = "hq-upload-sink"


@dataclass
class Dead:
    """A dead letter waiting for the transaction that moves the offsets past its record."""

    msg: Message
    error: Unusable


class _Aborted(Exception):
    """Thrown into the open transaction's context manager to roll it back."""


def _not_yet_applied(items: Sequence[Item], position: dict[str, str],
                     stored: dict[str, str]) -> tuple[list[Item], dict[str, str]]:
    """``items`` at or above the offsets HQ holds, and ``position`` never below them."""
    fresh = [i for i in items if (i.msg.offset() or 0) >= int(stored.get(offset_key(i.msg), 0))]
    if len(fresh) < len(items):
        log.warning("HQ upload sink: %d re-delivered records below the offsets HQ holds skipped",
                    len(items) - len(fresh))
    return fresh, {k: str(max(int(v), int(stored.get(k, 0)))) for k, v in position.items()}


def _sessions(groups: Sequence[Group], dead: Sequence[Dead], started: dt.datetime) -> list[Session]:
    finished = utcnow()
    sessions = [Session(g.channel, g.table.job, g.table.subjob.id, g.table.name, g.topic, g.partition,
                        g.first_offset, g.last_offset, min(i.counter for i in g.items), max(i.counter for i in g.items),
                        len(g.items), g.inserted, g.duplicates, 0, APPLIED, started, finished) for g in groups]
    for channel, n in Counter(x.error.channel or "?" for x in dead).items():
        sessions.append(Session(channel, "", "", "", "", -1, -1, -1, rows_received=n, rows_dead_lettered=n,
                                status=APPLIED, started_at=started, finished_at=finished,
                                error=f"{n} records dead-lettered (see the dead-letter topic)"))
    return sessions


class HqTarget:
    """See the module docstring. ``dlq`` (the dead-letter producer) is set by the sink's ``setup``."""

    def __init__(self, catalog: Catalog, dialect: Any, group_id: str, dlq_topic: str, options: Any) -> None:
        self.catalog, self.dialect, self.group_id, self.dlq_topic = catalog, dialect, group_id, dlq_topic
        self.options = options
        self.post_upload = PostUploadHook(catalog.topology.hq.post_upload, dialect)
        self.conn: Connection | None = None
        self.dlq: Producer | None = None
        self.dead: list[Dead] = []
        self._thread = 0
        self._stale = False
        self._tx: contextlib.ExitStack[Any] | None = None
        self._groups: list[Group] = []
        self._started = utcnow()
        self._since_prune = 0

    # ---------------------------------------------------------------------------- connection
    def connect(self) -> None:
        """(Re)open HQ: state and sessions tables, retention, HQ tables introspected, pending post-upload calls."""
        if self.conn is not None:
            quietly(self.conn.close, "HQ upload sink: closing the HQ connection", log)
            self.conn = None
        d, hq = self.dialect, self.catalog.topology.hq
        try:
            conn = d.connect(hq.dsn)
        except Exception as exc:
            raise RetriableError(f"HQ database {hq.redacted()} is unreachable: {exc}") from exc
        try:
            with d.transaction(conn):
                d.ensure_state_table(conn)
                ensure_sessions_table(conn, d)
                self._prune(conn)
                self.post_upload.ensure(conn)
            tables = self.catalog.introspect(conn, d)
            conn.rollback()
            self.post_upload.run_pending(conn)  # calls a killed sink left queued
        except BaseException as exc:
            quietly(conn.close, "HQ upload sink: closing a connection that failed to set up", log)
            if isinstance(exc, CdxError):
                raise
            raise db_error(d, exc, "HQ database") from exc
        self.conn, self._thread, self._stale = conn, threading.get_ident(), False
        self.catalog.tables = tables

    def open(self) -> None:
        """Connect unless connected on this thread (SQLite connections belong to the thread that opened them)."""
        if self.conn is None or self._stale or self._thread != threading.get_ident():
            self.connect()

    def read_offsets(self) -> dict[str, str]:
        """The offsets HQ holds, by ``<topic>/<partition>``."""
        assert self.conn is not None, "HQ is not connected"
        stored = self.dialect.read_state(self.conn, self.group_id)
        self.conn.rollback()
        return stored

    # ---------------------------------------------------------------------------- transaction
    def begin(self) -> None:
        self.open()
        assert self.conn is not None
        self._started = utcnow()
        tx = contextlib.ExitStack()
        with typed_errors(self.dialect, "starting an HQ transaction"):
            tx.enter_context(self.dialect.transaction(self.conn))
        self._tx = tx

    def write(self, items: Sequence[Item], position: dict[str, str]) -> None:
        """Idempotent by offset: records below the offsets HQ holds (read in this transaction) were
        applied by an earlier transaction and are skipped, and no stored offset moves backwards, so a
        re-delivery (a consumer that started at Kafka's monitoring offsets, a rebalance) applies nothing twice."""
        assert self.conn is not None
        d, conn = self.dialect, self.conn
        with typed_errors(d, "reading upload offsets at HQ"):
            items, position = _not_yet_applied(items, position, d.read_state(conn, self.group_id))
        groups = group_items(items)
        try:
            insert_groups(d, conn, groups)
        except SkippableError as exc:
            one = items[0] if len(items) == 1 else None
            if one is None:
                raise SkippableError(f"refused by HQ: {exc}") from exc
            raise Unusable(f"refused by HQ: {exc}", one.channel, one.table.name, one.counter, one.values) from exc
        except CdxError:
            raise
        except Exception as exc:
            raise db_error(d, exc, "applying uploads to HQ") from exc
        with typed_errors(d, "storing upload offsets at HQ"):
            self._flush_dead_letters()
            d.write_state(conn, self.group_id, position)
            sessions = _sessions(groups, self.dead, self._started)
            self.post_upload.queue(conn, sessions)
            insert_sessions(conn, d, sessions)
            self._since_prune += 1
            if self._since_prune >= self.options.prune_every:
                self._prune(conn)
        self._groups = groups

    def commit(self) -> None:
        assert self._tx is not None and self.conn is not None
        tx, self._tx = self._tx, None
        with typed_errors(self.dialect, "committing uploads at HQ"):
            tx.close()
        self._after_commit()
        self.post_upload.run_pending(self.conn)

    def abort(self, error: BaseException | None = None) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            quietly(lambda: tx.__exit__(_Aborted, _Aborted(), None), "HQ upload sink: rolling back", log)
        self.dead.clear()
        self._groups = []
        if isinstance(error, RetriableError):
            self._stale = True  # reconnect before the next batch

    def close(self) -> None:
        if self.dlq is not None:
            self.dlq.flush(10)
        if self.conn is not None:
            quietly(self.conn.close, "HQ upload sink: closing the HQ connection", log)
            self.conn = None

    # ---------------------------------------------------------------------------- helpers
    def _prune(self, conn: Connection) -> None:
        """Upload-session retention (caller's HQ transaction)."""
        self._since_prune = 0
        deleted = prune_sessions(conn, self.dialect, self.options.session_retention_days,
                                 self.options.session_max_rows)
        if deleted:
            log.info("deleted %d upload sessions beyond the retention", deleted)

    def _flush_dead_letters(self) -> None:
        if not self.dead:
            return
        assert self.dlq is not None
        deliver(self.dlq, self.dlq_topic, [
            dlq_record("upload-sink", x.error.reason, channel=x.error.channel, table=x.error.table,
                       counter=x.error.counter, topic=x.msg.topic(), partition=x.msg.partition(),
                       offset=x.msg.offset(), row=x.error.row, value=x.msg.value(), key=x.msg.key())
            for x in self.dead], 30.0, "dead letters")

    def _after_commit(self) -> None:
        for g in self._groups:
            metrics.SINK_ROWS.labels(g.channel, g.table.name, "inserted").inc(g.inserted)
            metrics.SINK_ROWS.labels(g.channel, g.table.name, "duplicate").inc(g.duplicates)
        for x in self.dead:  # counted in cdx_stage_records_total{outcome="dead_lettered"}
            log.error("dead letter: channel %s, table %s, counter %s (%s[%s]@%s): %s", x.error.channel,
                      x.error.table, x.error.counter, x.msg.topic(), x.msg.partition(), x.msg.offset(),
                      x.error.reason)
        self.dead.clear()
        self._groups = []

    def record_failure(self, msgs: Sequence[Message], exc: BaseException) -> None:
        """A ``Failed`` session per (channel, partition) of the batch, if HQ answers (best effort)."""
        if self.conn is None:
            return
        now = utcnow()
        spans: dict[tuple[str, int], list[int]] = {}
        for m in msgs:
            spans.setdefault((m.topic() or "", m.partition() or 0), []).append(m.offset() or 0)
        sessions = [Session(self.catalog.channels.get(t, t), "", "", "", t, p, min(o), max(o), rows_received=len(o),
                            status=FAILED, started_at=now, finished_at=now, error=str(exc))
                    for (t, p), o in spans.items()]
        try:
            self.conn.rollback()
            with self.dialect.transaction(self.conn):
                insert_sessions(self.conn, self.dialect, sessions)
        except Exception as err:
            log.debug("could not record the failed session: %s", err)
