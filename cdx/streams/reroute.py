"""Re-routing a source partition to groups whose shape changed (transactional engine). Resumable, exactly once.

Called by the activation (``cdx.streams.activation``) for a source partition tp at position P (every
record below P was routed under the shape stored with each group's progress), before any record
of tp at or above P is routed. For every group G of the plan:

- no shape stored: the current one is stored (adopted; nothing is sent);
- ``cdx.streams.reshape.reroute_needed``: tp is read again from the beginning of its compacted table
  topic (or from where an interrupted re-route of the same shape stopped, ``rr``) up to P and every
  record is routed to G under the current plan, with the key state: rows that now belong to G are
  sent whole (new columns filled from the table topic, no HQ load), rows that no longer do get a
  delete. Each record sent carries the header ``cdx.reroute`` = the re-route's generation for G
  (``gen``, counted per group and partition), which tells the sinks to apply it although its source
  position is not new (they dedupe re-routed records on their own watermark, ``cdx.connectors.sink.plan``).
  The re-route runs in transactions of ``CHUNK`` records, each also storing ``rr`` (source offsets
  below it are re-routed) in G's progress, with the group metadata of offset P (a worker that lost
  tp is fenced). The last one stores the shape without ``rr``. A crash resumes at ``rr``;
- otherwise (same shape, or only columns removed) the current shape is stored if it differs.

Everything sent to G for one key stays in source order: the original routes of offsets below P,
then their re-routes, then the live stream from P.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from cdx.kafka.reading import read_range
from cdx.streams import metrics
from cdx.streams.engine_state import TP, EngineState
from cdx.streams.progress import encode_key
from cdx.streams.reshape import describe, group_shape, reroute_needed, same_shape

log = logging.getLogger("cdx.router")
CHUNK = 2000


class Rerouter:
    def __init__(self, engine: EngineState) -> None:
        self.e = engine

    def reshape(self, tp: TP, pos: int) -> None:
        """Store, adopt or re-route the shape of every group of tp's topic (see the module docstring)."""
        e = self.e
        topic, p = tp
        subjob = e.plan.subjob_of(topic)
        if subjob is None:
            return
        store: dict[str, dict[str, Any]] = {}
        todo: dict[str, tuple[int, dict[str, Any]]] = {}
        for g in e.plan.groups_of(topic):
            k = (g, topic, p)
            want = group_shape(e.topology, subjob, g)
            cur = e.progress.shape(k)
            if cur is None or not reroute_needed(cur, want):
                shape = {**want, "gen": int((cur or {}).get("gen", 0))}
                if cur != shape:
                    store[g] = shape
                continue
            if "rr" in cur and same_shape(cur, want):
                todo[g] = (int(cur["rr"]), {**want, "gen": int(cur.get("gen", 0))})
            else:
                todo[g] = (OFFSET_BEGINNING, {**want, "gen": int(cur.get("gen", 0)) + 1})
            log.info("router: re-routing %s[%d] below %d to %s (%s)", topic, p, pos, g, describe(cur, want))
        if store:
            self._store(tp, store, pos)
        if todo:
            self._reroute(tp, todo, pos)

    def _store(self, tp: TP, shapes: dict[str, dict[str, Any]], pos: int) -> None:
        with self.e.txn.run([TopicPartition(tp[0], tp[1], pos)], self.e.consumer):
            for g, shape in shapes.items():
                self._put(tp, g, shape, pos)

    def _put(self, tp: TP, group: str, shape: dict[str, Any], pos: int) -> None:
        """Progress of (group, tp) with ``shape`` into the open transaction (next: at least what it is)."""
        e = self.e
        k = (group, tp[0], tp[1])
        changed = e.progress.set(k, max(e.progress.get(*k) or 0, pos))
        if e.progress.set_shape(k, shape) or changed:
            e.router.produce(e.progress.topic, encode_key(k), e.progress.encoded(k), None)

    def _reroute(self, tp: TP, todo: dict[str, tuple[int, dict[str, Any]]], pos: int) -> None:
        marks = {g: str(shape["gen"]).encode() for g, (_start, shape) in todo.items()}

        def store_rr(upto: int) -> None:  # ``rr`` = ``upto`` until the last chunk, which stores the shape alone
            for g, (_start, shape) in todo.items():
                self._put(tp, g, shape if upto >= pos else {**shape, "rr": upto}, pos if upto >= pos else 0)

        sent = route_below(self.e, tp, {g: start for g, (start, _shape) in todo.items()}, pos, store_rr, marks)
        metrics.BACKFILLED.inc(sent)
        log.info("router: re-routed %s[%d] below %d to %s: %d records sent", tp[0], tp[1], pos, sorted(todo), sent)


def route_below(e: EngineState, tp: TP, starts: dict[str, int], pos: int, write: Callable[[int], None],
                marks: Mapping[str, bytes] | None = None) -> int:
    """Route tp's records below ``pos`` to each group of ``starts`` from its start on (``marks``: re-route
    marks), in transactions of ``CHUNK`` records sent with the group metadata of offset ``pos`` (a worker that
    lost tp is fenced); ``write(upto)`` adds the groups' progress to each. Returns the records sent."""
    n_out = e.router.sent
    chunk: list[Message] = []
    for m in read_range(e.config, tp[0], {tp[1]: pos}, {tp[1]: min(starts.values())}, timeout=60):
        chunk.append(m)
        if len(chunk) >= CHUNK:
            _chunk(e, tp, starts, chunk, (m.offset() or 0) + 1, pos, write, marks)
            chunk = []
    _chunk(e, tp, starts, chunk, pos, pos, write, marks)
    return e.router.sent - n_out


def _chunk(e: EngineState, tp: TP, starts: dict[str, int], msgs: list[Message], upto: int, pos: int,
           write: Callable[[int], None], marks: Mapping[str, bytes] | None) -> None:
    """Route ``msgs`` to the groups whose start they reached, ``write(upto)``; the starts move to ``upto``."""
    with e.txn.run([TopicPartition(tp[0], tp[1], pos)], e.consumer):
        for m in msgs:
            off = m.offset() or 0
            wanted = [g for g, s in starts.items() if off >= s]
            if wanted:
                e.router.route(m, wanted, dead_letter=False, marks=marks)
        write(upto)
    for g in starts:
        starts[g] = max(starts[g], upto)
