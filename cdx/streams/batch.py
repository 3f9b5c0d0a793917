"""One source record in, its routed records out: decode once, route with state, encode, produce. Synchronous.

``RecordRouter.route(msg, wanted)`` is the transactional engine's per-record path (live stream and
backfill alike). It does no I/O of its own besides ``producer.produce`` (into the caller's open
Kafka transaction) and reads of the key state; no asyncio, no per-record callbacks (the producer
reports failed deliveries only, and a failure aborts the transaction).

- bytes first: an upsert or delete of a table ``cdx.streams.fastpath`` compiles is routed on its bytes
  (no decode, no encode; see that module for when it applies and how its output is proven equal to
  this module's); ``route`` falls back to the decoding path below for everything else. A tombstone
  whose key no group holds (the delete before it was routed) costs one key-state lookup;
- decode: the key and value once each (the codec; single-object writer fingerprints are read from
  the record headers, so a known schema pair costs no lookup); HQ columns are cached per writer
  schema pair and projections per (writer schema pair, subjob) (``RoutingPlan.projections``);
- encode: a routed value once per record, the same bytes to every group (single-object encoding
  does not depend on the topic), a tombstone with its source position in headers. Where the
  projection is the identity, values pass through unchanged (``cdx.streams.splice``): the routed
  bytes are the source bytes under the routed schema's header plus the routing fields;
- state: ``cdx.streams.stateful.route_stateful`` with the key's groups from ``KeyState``; a changed
  entry adds a changelog record to the transaction;
- a record that cannot be decoded goes to the dead-letter topic, in the same transaction;
- a **re-route** (``cdx.streams.reroute``) passes ``marks``: each record sent to a group in ``marks``
  carries the header ``cdx.reroute`` = that group's mark, so its sinks apply it although its source
  position is one they applied already (``cdx.connectors.sink.plan``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from confluent_kafka import Message, Producer

from cdx.codec import Codec, SingleObjectCodec
from cdx.codec.errors import SchemaError
from cdx.errors import FatalError, SkippableError
from cdx.routed import tombstone_headers
from cdx.stage.letters import Position, make_letter, origin_of
from cdx.streams import metrics
from cdx.streams.fastpath import FastTable, delete_records, delete_targets, held_after
from cdx.streams.keystate import KeyState, encode_held
from cdx.streams.routing import Route, RoutingPlan, SourceRecord, hq_columns
from cdx.streams.splice import Splicer
from cdx.streams.stateful import Emit, route_stateful

log = logging.getLogger("cdx.router")

REROUTE_HEADER = "cdx.reroute"
"""Header of a re-routed record: the re-route's mark (its generation for the group, a decimal)."""


class Decoder:
    """Source records decoded once: HQ columns cached per writer schema pair (single-object encoding: by the
    writer fingerprints in the record's header, no lookup) and per key schema (a tombstone has only its key)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.single_object = isinstance(codec, SingleObjectCodec)
        self._columns: dict[Any, tuple[Any, ...]] = {}
        self.key_columns: dict[Any, tuple[Any, tuple[Any, ...]]] = {}
        self._key_fields: dict[Any, tuple[str, ...]] = {}

    def decode(self, topic: str, partition: int, offset: int, key: bytes, value: bytes | None) -> SourceRecord:
        """The record decoded once: the key values are taken from the envelope's row when it has them."""
        sid, columns = self.columns(topic, key, value)
        env = self.codec.decode_value(topic, value) if value is not None else None
        key_dict = None
        if env is not None:
            row = env.get("after") or env.get("before")
            fields = self._key_fields.get(sid)
            if fields is None:
                fields = self._key_fields[sid] = tuple(c.field for c in columns if c.primary_key)
            if isinstance(row, dict) and fields and all(f in row for f in fields):
                key_dict = {f: row[f] for f in fields}
        if key_dict is None:
            key_dict = self.codec.decode_key(topic, key)
        return SourceRecord(topic, partition, offset, key_dict, env, columns, sid)

    def columns(self, topic: str, key: bytes, value: bytes | None) -> tuple[Any, tuple[Any, ...]]:
        if value is None:  # a tombstone: the columns last seen with this key schema, else the key's alone
            kid = (topic, key[:10]) if self.single_object else (topic, self.codec.writer_schema(topic, key, True))
            found = self.key_columns.get(kid)
            if found is None:
                ks = self.codec.writer_schema(topic, key, is_key=True)
                found = self.key_columns[kid] = (("key-only", kid), hq_columns(ks, ks))
            return found
        if self.single_object:
            sid: Any = (value[2:10], key[2:10])
            cols = self._columns.get(sid)
            if cols is not None:
                return sid, cols
        vs = self.codec.writer_schema(topic, value)
        ks = self.codec.writer_schema(topic, key, is_key=True)
        if not self.single_object:
            sid = (vs.fingerprint, ks.fingerprint)
            cols = self._columns.get(sid)
            if cols is not None:
                return sid, cols
        cols = self._columns[sid] = hq_columns(vs, ks)
        kid = (topic, key[:10]) if self.single_object else (topic, ks)
        self.key_columns[kid] = (sid, cols)
        return sid, cols


class RecordRouter:
    """See the module docstring. ``plan`` may be replaced between transactions (a reload)."""

    POLL_EVERY = 1000

    def __init__(self, plan: RoutingPlan, codec: Codec, keys: KeyState, producer: Producer, dlq: str, *,
                 fast: bool = True) -> None:
        self.plan = plan
        self.codec = codec
        self.keys = keys
        self.producer = producer
        self.dlq = dlq
        self.decoder = Decoder(codec)
        self._single_object = self.decoder.single_object
        self._unpolled = 0
        self.sent = 0
        self.splicer = Splicer() if self._single_object else None
        self.fast = fast and self._single_object
        """Upserts and deletes take ``cdx.streams.fastpath`` where it applies (single-object encoding only)."""
        self._fast: dict[tuple[str, bytes, bytes], FastTable | None] = {}
        self._fast_plan = plan
        self.fast_routed = 0
        """Records routed by the byte-level path (the rest were decoded)."""
        self._held_bytes: dict[frozenset[str] | None, bytes] = {}
        self._capture: list[tuple[str, bytes | None, bytes | None, Any]] | None = None

    def reset(self) -> None:
        """After an aborted transaction: the routed schemas are published again with the next one."""
        if self.splicer is not None:
            self.splicer.reset()
        for table in self._fast.values():
            if table is not None:
                table.verified = table.verified_delete = False

    def route(self, msg: Message, wanted: Collection[str] | None = None, *, dead_letter: bool = True,
              marks: Mapping[str, bytes] | None = None) -> int:
        """Route ``msg`` to the ``wanted`` groups (None: every group of its topic); returns records produced.
        ``marks``: re-route marks per group (module docstring)."""
        topic = msg.topic() or ""
        value = msg.value()
        if value is None:
            key = msg.key()
            if key is not None and (topic, key[:10]) in self.decoder.key_columns \
                    and self.keys.get(self.keys.key(topic, key)) is None:
                return 0  # a tombstone after a delete (or of a key never routed): nothing holds the row
        elif self.fast and not marks:  # re-routes carry per-group marks: the decoding path adds them
            n = self._route_fast(msg, topic, value, wanted, dead_letter)
            if n is not None:
                return n
        return self._route_decoded(msg, topic, value, wanted, dead_letter, marks)

    def _route_decoded(self, msg: Message, topic: str, value: bytes | None, wanted: Collection[str] | None,
                       dead_letter: bool, marks: Mapping[str, bytes] | None = None) -> int:
        """The decoding path: decode, ``route_stateful``, encode (or splice), produce."""
        if self.plan.subjob_of(topic) is None:
            return 0
        key = msg.key()
        try:
            if key is None:
                raise SkippableError("record has no key")
            record = self.decoder.decode(topic, msg.partition() or 0, msg.offset() or 0, key, value)
        except SkippableError as exc:
            reason = exc.reason
            if dead_letter:
                self.to_dead_letters(msg, reason)
            else:
                log.warning("router: backfill skips %s[%d]@%d: %s", topic, msg.partition(), msg.offset(), reason)
            return 0
        state_key = self.keys.key(topic, key)
        groups = wanted if wanted is not None else self.plan.groups_of(topic)
        try:
            emits, held = route_stateful(self.plan, record, self.keys.get(state_key), groups)
        except SchemaError as exc:
            raise FatalError(f"cannot project {topic} for its subjob: {exc}") from exc
        if self.keys.set(state_key, held):
            self.produce(self.keys.topic, state_key, encode_held(held), None)
        n = sum(self._emit(e, record, key, value, marks) for e in emits)
        self.sent += n
        return n

    def _fast_table(self, topic: str, key: bytes, value: bytes) -> FastTable | None:
        if self._fast_plan is not self.plan:
            self._fast, self._fast_plan = {}, self.plan
        ident = (topic, value[2:10], key[2:10])
        table = self._fast.get(ident, self)
        if table is not self:
            return table  # type: ignore[return-value]
        table = None
        subjob = self.plan.subjob_of(topic)
        if subjob is not None and len(value) > 10 and len(key) > 10:
            try:
                sid, columns = self.decoder.columns(topic, key, value)
                projections = self.plan.projections(subjob, columns, sid)
                table = FastTable.build(self.plan, topic, self.codec.writer_schema(topic, value).to_dict(),
                                        self.codec.writer_schema(topic, key, is_key=True).to_dict(), projections)
            except (SkippableError, SchemaError) as exc:  # the decoding path dead-letters it or stops
                log.debug("router: %s[%s] takes the decoding path: %s", topic, ident[1].hex(), exc)
                return None
        self._fast[ident] = table
        return table

    def _route_fast(self, msg: Message, topic: str, value: bytes, wanted: Collection[str] | None,
                    dead_letter: bool = True) -> int | None:
        """``cdx.streams.fastpath``: the records produced, or None when this record takes the decoding path."""
        key = msg.key()
        if key is None:
            return None
        table = self._fast.get((topic, value[2:10], key[2:10]), self) if self._fast_plan is self.plan else self
        if table is self:
            table = self._fast_table(topic, key, value)
        if table is None:
            return None
        assert isinstance(table, FastTable)
        scanned = table.layout.scan(value, 10)
        if scanned is None:
            return None
        starts, source, op = scanned
        delete = op == "d"
        if delete and not table.deletes:
            return None
        groups = table.groups(value, starts, delete)
        state_key = table.state_prefix + key
        held = self.keys.get(state_key)
        topics = self.plan.group_topics
        partition, offset = msg.partition() or 0, msg.offset() or 0
        if delete:
            out, new = delete_targets(table, held, groups, wanted)
            made = [(topics[g], kb, vb, h) for kb, vb, h in delete_records(table, value, key, source, partition, offset)
                    for g in out] if out else []
            if not table.verified_delete:
                return self._verify(table, msg, wanted, state_key, new, made, True, dead_letter)
        else:
            new = held_after(table, held, op, groups, wanted)
            if new is None:
                return None
            out = groups if wanted is None else tuple(g for g in groups if g in wanted)
            records = table.records(value, key, starts, source, partition, offset) if out else ()
            made = [(topics[g], kb, vb, None) for kb, vb in records for g in out]
            if not table.verified:
                return self._verify(table, msg, wanted, state_key, new, made, False, dead_letter)
        routed = len(made)
        if new != held:
            self.keys.put(state_key, new)
            encoded = self._held_bytes.get(new)
            if encoded is None:
                encoded = self._held_bytes[new] = encode_held(new) or b""
            made.insert(0, (self.keys.topic, state_key, None if new is None else encoded, None))
        self._send(made)
        self.sent += routed
        self.fast_routed += 1
        return routed

    def _verify(self, table: FastTable, msg: Message, wanted: Collection[str] | None, state_key: bytes,
                held: frozenset[str] | None, expected: list[tuple[str, bytes, bytes | None, Any]], delete: bool,
                dead_letter: bool) -> int:
        """Route ``msg`` by decoding; enable ``table``'s fast path when it made exactly ``expected``."""
        self._capture = []
        try:
            n = self._route_decoded(msg, table.topic, msg.value(), wanted, dead_letter)
            made = [r for r in self._capture if r[0] != self.keys.topic]
        finally:
            self._capture = None
        if not expected:
            return n  # nothing encoded, nothing published: the next record of this table verifies
        if made == expected and self.keys.get(state_key) == held:
            if delete:
                table.verified_delete = True
            else:
                table.verified = True
        else:
            log.warning("router: %s: the byte-level path would differ from decoding; decoding its records",
                        table.topic)
            self._fast = {k: (None if t is table else t) for k, t in self._fast.items()}
        return n

    def _emit(self, e: Emit, record: SourceRecord, raw_key: bytes, raw_value: bytes | None,
              marks: Mapping[str, bytes] | None = None) -> int:
        r = e.route
        kb = vb = None
        headers = None
        if r.value is None:
            subjob = self.plan.subjob_of(record.topic)
            headers = tombstone_headers(r.schemas, subjob.id if subjob else "", record.position)
        elif self.splicer is not None and raw_value is not None and record.value is not None \
                and r.value["op"] == record.value["op"] != "d":
            kb, vb = self.splicer.encode(record, r, raw_key, raw_value, lambda: self._encode(r, ""))
        for g in e.groups:
            topic = self.plan.group_topics[g]
            if kb is None or not self._single_object:
                kb, vb = self._encode(r, topic)
            mark = marks.get(g) if marks else None
            self.produce(topic, kb, vb, headers if mark is None else [*(headers or ()), (REROUTE_HEADER, mark)])
        return len(e.groups)

    def _encode(self, r: Route, topic: str) -> tuple[bytes, bytes | None]:
        kb = self.codec.encode_key(topic, r.schemas.key, r.key)
        return kb, None if r.value is None else self.codec.encode_value(topic, r.schemas.value, r.value)

    def _send(self, records: Sequence[tuple[str, bytes | None, bytes | None, Any]]) -> None:
        """``produce`` each of ``records`` (topic, key, value, headers); a full local queue is waited out."""
        produce = self.producer.produce
        for topic, key, value, headers in records:
            while True:
                try:
                    if headers is None:
                        produce(topic, value, key)
                    else:
                        produce(topic, value, key, headers=headers)
                    break
                except BufferError:  # local queue full: let librdkafka send
                    self.producer.poll(0.05)
        self._unpolled += len(records)
        if self._unpolled >= self.POLL_EVERY:
            self._unpolled = 0
            self.producer.poll(0)

    def produce(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        self._send(((topic, key, value, headers),))
        if self._capture is not None:
            self._capture.append((topic, key, value, headers))

    def to_dead_letters(self, msg: Message, reason: str) -> None:
        """``msg`` to the dead-letter topic with ``reason``, in the open transaction."""
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        log.error("router: %s[%d]@%d to the dead-letter topic: %s", topic, partition, offset, reason)
        key, value, headers = make_letter("router", reason, source=Position(topic, partition, offset),
                                          record=origin_of(msg))
        self.produce(self.dlq, key, value, headers)
        metrics.DEAD_LETTERS.inc()
