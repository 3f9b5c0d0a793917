"""Dead letters: records a channel database refuses, written to ``<prefix>._dlq``.

Each dead letter is one Kafka record on the DLQ topic:

- key: the owner id (channel or register) as UTF-8, so one database's letters stay in order;
- value: JSON ``{"channel", "kind", "group_topic", "partition", "offset", "schema", "table",
  "subjob", "op", "key", "source": {"topic", "partition", "offset"}, "error", "ts_ms",
  "record": {"key_b64", "value_b64"}}`` (``key`` is the primary key with JSON-safe values:
  decimals, dates, UUIDs as strings, bytes as base64; fields are null when the record could
  not be decoded). ``record`` holds the original record exactly: ``{"key_b64", "value_b64",
  "headers": [[name, value_b64], ...], "timestamp": ms}``, enough to replay it (``cdx dlq
  replay``, :mod:`cdx.connectors.sink.dlq_replay`). A letter written by a replay that failed again
  also has ``"replay_of"`` (the DLQ offset of the letter it replaces) and ``"attempt"``;
- headers: ``cdx.channel``, ``cdx.table``, ``cdx.error`` (first 1,000 characters),
  ``cdx.group.topic``/``partition``/``offset``, ``cdx.source.topic``/``partition``/``offset``.

``KafkaDeadLetters.send`` returns only once the broker acknowledged the record (else
``RetriableError``); the sink then commits the record's offset with the rest of its batch.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from cdx.connectors.sink.records import Record
from cdx.errors import RetriableError

ERROR_HEADER_LIMIT = 1000


def json_safe(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal | uuid.UUID | dt.date | dt.datetime | dt.time):
        return value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dead_letter_value(owner_id: str, kind: str, topic: str, rec: Record, error: str,
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of one dead letter (see module docstring)."""
    ch = rec.change
    doc = {
        "channel": owner_id, "kind": kind, "group_topic": topic, "partition": rec.partition, "offset": rec.offset,
        "schema": ch.schema if ch else None, "table": ch.table if ch else None,
        "subjob": ch.subjob if ch else None, "op": ch.op if ch else None,
        "key": json_safe(ch.key) if ch else None,
        "source": {"topic": ch.position.topic, "partition": ch.position.partition,
                   "offset": ch.position.offset} if ch else None,
        "error": error, "ts_ms": int(time.time() * 1000),
        "record": {"key_b64": json_safe(rec.key) if rec.key is not None else None,
                   "value_b64": json_safe(rec.value) if rec.value is not None else None,
                   "headers": [[k, json_safe(v) if v is not None else None] for k, v in rec.headers or ()],
                   "timestamp": rec.timestamp or None},
    }
    doc.update(extra or {})
    return doc


class KafkaDeadLetters:
    """Writes dead letters to ``topic`` with one shared (thread-safe) producer."""

    def __init__(self, producer_config: Mapping[str, Any], topic: str, *, timeout: float = 30.0) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.timeout = timeout
        self.producer = Producer(dict(producer_config))

    def send(self, owner_id: str, kind: str, group_topic: str, rec: Record, error: str,
             extra: Mapping[str, Any] | None = None) -> None:
        doc = dead_letter_value(owner_id, kind, group_topic, rec, error, extra)
        src = doc["source"] or {}
        headers: list[tuple[str, str | bytes | None]] = [(k, str(v).encode("utf-8")) for k, v in (
            ("cdx.channel", owner_id), ("cdx.table", f"{doc['schema']}.{doc['table']}" if doc["table"] else ""),
            ("cdx.error", error[:ERROR_HEADER_LIMIT]), ("cdx.group.topic", group_topic),
            ("cdx.group.partition", rec.partition), ("cdx.group.offset", rec.offset),
            ("cdx.source.topic", src.get("topic", "")), ("cdx.source.partition", src.get("partition", "")),
            ("cdx.source.offset", src.get("offset", "")))]
        failures: list[Any] = []
        done = threading.Event()

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(err)
            done.set()

        try:
            self.producer.produce(self.topic, key=owner_id.encode("utf-8"),
                                  value=json.dumps(doc, ensure_ascii=False).encode("utf-8"),
                                  headers=headers, on_delivery=delivered)
        except BufferError as e:
            raise RetriableError(f"dead-letter queue full: {e}") from e
        deadline = time.monotonic() + self.timeout
        while not done.is_set() and time.monotonic() < deadline:
            self.producer.poll(0.05)
        if failures or not done.is_set():
            why = failures[0] if failures else f"not acknowledged in {self.timeout:.0f}s"
            raise RetriableError(f"cannot write dead letter to {self.topic}: {why}")

    def close(self) -> None:
        self.producer.flush(self.timeout)


class DeadLettersByOwner:
    """Dead letters of many channels in one process, each written with its own channel's credentials:
    one :class:`KafkaDeadLetters` per owner, created on that owner's first letter (a host with no dead
    letters opens no producer). ``producer_config_of(owner_id)`` gives the owner's producer settings."""

    def __init__(self, producer_config_of: Callable[[str], Mapping[str, Any]], topic: str) -> None:
        self.topic = topic
        self._config_of = producer_config_of
        self._writers: dict[str, KafkaDeadLetters] = {}
        self._lock = threading.Lock()

    def send(self, owner_id: str, kind: str, group_topic: str, rec: Record, error: str,
             extra: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            writer = self._writers.get(owner_id)
            if writer is None:
                writer = self._writers[owner_id] = KafkaDeadLetters(self._config_of(owner_id), self.topic)
        writer.send(owner_id, kind, group_topic, rec, error, extra)

    def close(self) -> None:
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()
