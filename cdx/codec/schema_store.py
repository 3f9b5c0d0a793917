"""Writer schemas by fingerprint: in memory, backed by a compacted Kafka topic.

The schemas topic (default ``_cdx-schemas``, ``cleanup.policy=compact``) holds one record per
schema: key = fingerprint hex (16 lower-case hex digits of the 8 little-endian bytes, as in the
single-object header), value = the schema JSON (UTF-8). Anyone can resolve a fingerprint by reading
it. Producers publish with ``SchemaPublisher`` (inside their own transaction;
:mod:`cdx.codec.schema_publisher`); readers use ``SchemaStore.resolve``, which reads the topic to its
end on a miss.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cdx.codec.columns import Column
from cdx.codec.envelope import TableSchemas
from cdx.codec.errors import SchemaConflictError, SchemaError, SchemaStoreUnavailable, UnknownSchemaError
from cdx.codec.schema import AvroSchema

log = logging.getLogger(__name__)

DEFAULT_SCHEMAS_TOPIC = "_cdx-schemas"
SCHEMAS_TOPIC_CONFIG: dict[str, str] = {
    "cleanup.policy": "compact",
    # Schemas are tiny and must never be lost: keep them forever, compact duplicates away.
    "retention.ms": "-1",
    "min.compaction.lag.ms": "0",
}
MAX_GENERATIONS = 64


def fingerprint_key(fingerprint: bytes | str | int) -> str:
    """The schemas-topic key (hex) of a fingerprint given as 8 bytes, hex, or Java's signed long."""
    if isinstance(fingerprint, bytes | bytearray | memoryview):
        fp = bytes(fingerprint)
        if len(fp) != 8:
            raise ValueError(f"a fingerprint has 8 bytes, not {len(fp)}")
        return fp.hex()
    if isinstance(fingerprint, int):
        return fingerprint.to_bytes(8, "little", signed=fingerprint < 0).hex()
    key = fingerprint.lower()
    if len(key) != 16 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not a fingerprint: {fingerprint!r}")
    return key


def ensure_schemas_topic(bootstrap_servers: str, topic: str = DEFAULT_SCHEMAS_TOPIC, *,
                         replication_factor: int = -1, timeout: float = 30.0) -> bool:
    """Create the compacted schemas topic (1 partition) if it does not exist. True if created.

    ``replication_factor=-1`` uses the brokers' default.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=replication_factor, config=dict(SCHEMAS_TOPIC_CONFIG))],
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout)
        return True
    except KafkaException as e:
        if e.args and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise SchemaStoreUnavailable(f"cannot create schemas topic {topic!r}: {e}") from e


class SchemaStore:
    """Known writer schemas by fingerprint, filled from ``register`` and from the schemas topic.

    Without ``bootstrap_servers`` it is memory only (unit tests, or a producer-side cache).
    Thread-safe. ``resolve`` reads the topic (incrementally, from where it stopped) only on a miss.
    """

    def __init__(self, bootstrap_servers: str | None = None, topic: str = DEFAULT_SCHEMAS_TOPIC, *,
                 consumer_config: Mapping[str, Any] | None = None, timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout = timeout
        self._consumer_config = dict(consumer_config or {})
        self._schemas: dict[str, AvroSchema] = {}
        self._conflicts: dict[str, str] = {}
        self._positions: dict[int, int] = {}
        self._consumer: Any = None
        self._synced = False
        self._lock = threading.RLock()

    # -- memory ---------------------------------------------------------------------------------

    def __contains__(self, fingerprint: object) -> bool:
        try:
            return fingerprint_key(fingerprint) in self._schemas  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self._schemas)

    def _clashes(self, s: AvroSchema) -> bool:
        """True if the fingerprint of ``s`` already names a different schema here."""
        known = self._schemas.get(s.fingerprint_hex)
        return known is not None and known.detailed != s.detailed

    def add(self, schema: AvroSchema | Mapping[str, Any] | str) -> AvroSchema:
        """Remember ``schema`` in memory; refuses a different schema with the same fingerprint."""
        s = AvroSchema.of(schema)
        key = s.fingerprint_hex
        with self._lock:
            if self._clashes(s):
                raise SchemaConflictError(
                    f"fingerprint {key} already names a different schema: the two differ only in attributes the"
                    f" Avro canonical form ignores (logical types, decimal precision/scale, cdx.length).\n"
                    f"  known: {self._schemas[key].detailed}\n  new:   {s.detailed}\n"
                    "Build the new schema with the next generation (SchemaStore.register_table does it)."
                )
            self._schemas.setdefault(key, s)
        return s

    def register(self, schema: AvroSchema | Mapping[str, Any] | str) -> bytes:
        """Add a writer schema and return its 8-byte fingerprint.

        With a schemas topic, the first ``register`` reads the topic once, so that a schema that
        clashes with one published by an earlier run is caught (``SchemaConflictError``).
        """
        s = AvroSchema.of(schema)
        if s.fingerprint_hex in self._schemas and not self._clashes(s):
            return s.fingerprint
        if not self._synced and self.bootstrap_servers:
            self.refresh()
        self.add(s)
        return s.fingerprint

    def register_table(self, topic_or_table: str, columns: Iterable[Column]) -> TableSchemas:
        """``TableSchemas.build`` at the lowest generations whose fingerprints are free or identical.

        Generation 0 unless an earlier schema for this table has the same canonical form but other
        logical attributes (e.g. a decimal scale change); then the namespace gets ``.g1``, ``.g2``...
        Key and value generations move independently, so a value change never changes key bytes.
        Both schemas end up registered.
        """
        cols = tuple(columns)
        if not self._synced and self.bootstrap_servers:
            self.refresh()
        key_gen = value_gen = 0
        for _ in range(MAX_GENERATIONS):
            ts = TableSchemas.build(topic_or_table, cols, key_generation=key_gen, value_generation=value_gen)
            key_clash, value_clash = self._clashes(ts.key), self._clashes(ts.value)
            if not (key_clash or value_clash):
                self.add(ts.key)
                self.add(ts.value)
                return ts
            key_gen, value_gen = key_gen + key_clash, value_gen + value_clash
        raise SchemaError(f"{topic_or_table}: no free schema generation below {MAX_GENERATIONS}")

    # -- Kafka ----------------------------------------------------------------------------------

    def resolve(self, fingerprint: bytes | str | int) -> AvroSchema:
        """The writer schema of a fingerprint; reads the schemas topic on a miss.

        Raises ``UnknownSchemaError`` (skippable) if it is still unknown after reading the topic to its
        end, ``SchemaConflictError`` if the topic holds two different schemas for it.
        """
        key = fingerprint_key(fingerprint)
        hit = self._schemas.get(key)
        if hit is not None:
            return hit
        if self.bootstrap_servers:
            self.refresh()
            hit = self._schemas.get(key)
            if hit is not None:
                return hit
            if key in self._conflicts:
                raise SchemaConflictError(self._conflicts[key])
            where = f"in memory nor in topic {self.topic!r}"
        else:
            where = "in memory (no schemas topic configured)"
        raise UnknownSchemaError(f"unknown writer schema fingerprint {key}: not {where}", key)

    def refresh(self, timeout: float | None = None) -> int:
        """Read the schemas topic from where the last read stopped to its end; returns how many schemas were new.

        "End" is the last stable offset (read_committed): schemas of open transactions are not seen.
        Raises ``SchemaStoreUnavailable`` (retriable) if the broker does not answer in time.
        """
        if not self.bootstrap_servers:
            return 0
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        limit = self.timeout if timeout is None else timeout
        with self._lock:
            consumer = self._get_consumer()
            deadline = time.monotonic() + limit
            try:
                pending = self._pending_partitions(consumer, deadline, limit)
                if not pending:
                    self._synced = True
                    return 0
                consumer.assign([TopicPartition(self.topic, p, self._positions.get(p, OFFSET_BEGINNING))
                                 for p in pending])
                try:
                    added = self._read_to_end(consumer, pending, deadline, limit)
                finally:
                    consumer.unassign()
            except KafkaException as e:
                raise SchemaStoreUnavailable(f"schemas topic {self.topic!r}: {e}") from e
            self._synced = True
            return added

    def _pending_partitions(self, consumer: Any, deadline: float, limit: float) -> dict[int, int]:
        """``{partition: end offset}`` of the partitions with records not read yet (none: the topic
        does not exist yet)."""
        from confluent_kafka import KafkaError, TopicPartition

        md = consumer.list_topics(self.topic, timeout=limit)
        tmd = md.topics.get(self.topic)
        if tmd is None or tmd.error is not None:
            if tmd is not None and tmd.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise SchemaStoreUnavailable(f"schemas topic {self.topic!r}: {tmd.error}")
            log.info("schemas topic %s does not exist (yet)", self.topic)
            return {}
        pending: dict[int, int] = {}
        for p in tmd.partitions:
            low, high = _watermarks(consumer, TopicPartition(self.topic, p), deadline)
            start = max(self._positions.get(p, low), low)
            if high > start:
                pending[p] = high
        return pending

    def _read_to_end(self, consumer: Any, pending: dict[int, int], deadline: float, limit: float) -> int:
        """Poll the assigned partitions until each reached its end offset in ``pending``; returns the
        schemas that were new."""
        from confluent_kafka import KafkaError

        added = 0
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SchemaStoreUnavailable(
                    f"reading schemas topic {self.topic!r} did not reach its end in {limit:.0f}s"
                    f" (partitions {sorted(pending)} still pending)")
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.pop(msg.partition(), None)
                    continue
                if err.retriable() or not err.fatal():
                    log.warning("schemas topic %s: %s", self.topic, err)
                    continue
                raise SchemaStoreUnavailable(f"schemas topic {self.topic!r}: {err}")
            p, off = msg.partition(), msg.offset()
            self._positions[p] = off + 1
            added += self._ingest(msg.key(), msg.value(), p, off)
            if p in pending and off + 1 >= pending[p]:
                pending.pop(p)
        return added

    def _ingest(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> int:
        where = f"{self.topic}[{partition}]@{offset}"
        if value is None:
            return 0  # a tombstone: nothing to learn
        try:
            s = AvroSchema.of(value.decode("utf-8"))
        except (SchemaError, UnicodeDecodeError) as e:
            log.warning("ignoring invalid schema at %s: %s", where, e)
            return 0
        if key is not None and key.decode("ascii", "replace").lower() != s.fingerprint_hex:
            log.warning("ignoring schema at %s: key %r is not its fingerprint %s", where, key, s.fingerprint_hex)
            return 0
        if s.fingerprint_hex not in self._schemas:
            self._schemas[s.fingerprint_hex] = s
            return 1
        if self._clashes(s):
            msg = (f"schemas topic {self.topic!r} holds two different schemas for fingerprint {s.fingerprint_hex}"
                   f" (at {where}); records with it cannot be decoded safely")
            log.error(msg)
            self._conflicts[s.fingerprint_hex] = msg
        return 0

    def _get_consumer(self) -> Any:
        if self._consumer is None:
            from confluent_kafka import Consumer

            conf = {
                "bootstrap.servers": self.bootstrap_servers,
                # Required by the client; never joined (assign only) and never committed.
                "group.id": f"cdx-schema-store-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # used only inside refresh(), to its end: the empty fetch at the end (the end of a partition
                # whose last offset is a transaction marker is seen by EOF) is not held by the broker 500 ms
                "fetch.wait.max.ms": 10,
                **self._consumer_config,
            }
            self._consumer = Consumer(conf)
        return self._consumer

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    def __enter__(self) -> SchemaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _watermarks(consumer: Any, tp: Any, deadline: float) -> tuple[int, int]:
    """``tp``'s low and high watermarks, retried while a just-created partition's leadership settles
    (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE) until ``deadline``; other errors propagate."""
    from confluent_kafka import KafkaError, KafkaException

    settling = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=max(0.1, deadline - time.monotonic()),
                                                       cached=False)
            return int(low), int(high)
        except KafkaException as e:
            if e.args[0].code() not in settling or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
