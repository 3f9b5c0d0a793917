"""Dead letters of the channel sinks: records a channel database refuses, written to ``<prefix>._dlq``.

The letter is the one format of :mod:`cdx.stage.letters` (component ``sink``, error kind
``skippable``): key the owner id (channel or register), so one database's letters stay in order;
``source`` = the routed record (group topic, partition, offset: the letter's *origin*); ``record``
= that record byte for byte (key, value, headers, timestamp), enough to replay it (``cdx dlq
replay``, :mod:`cdx.connectors.sink.dlq_replay`); ``key`` the primary key (JSON-safe), ``op``,
``table`` ``schema.table`` (all null when the record could not be decoded); ``extra``: ``kind``
(``channel``/``offline``), ``hq`` (the change's position on its HQ topic), ``subjob``, and for a
letter written by a replay that failed again ``replay_of`` (the DLQ offset of the letter it
replaces) and ``attempt``.

``KafkaDeadLetters.send`` returns only once the broker acknowledged the record (else
``RetriableError``); the sink then commits the record's offset with the rest of its batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Producer

from cdx.connectors.sink.records import Record
from cdx.kafka.control import deliver
from cdx.stage.letters import OriginRecord, Position, make_letter


def sink_letter(owner_id: str, kind: str, topic: str, rec: Record, error: str,
                extra: Mapping[str, Any] | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of the dead letter of ``rec`` read from group topic ``topic``."""
    ch = rec.change
    more: dict[str, Any] = {"kind": kind}
    table = None
    if ch is not None:
        table = f"{ch.schema}.{ch.table}" if ch.schema else ch.table
        more.update(hq={"topic": ch.position.topic, "partition": ch.position.partition,
                        "offset": ch.position.offset}, subjob=ch.subjob)
    more.update(extra or {})
    return make_letter(
        "sink", error, channel=owner_id, table=table, key=ch.key if ch else None, op=ch.op if ch else None,
        source=Position(topic, rec.partition, rec.offset),
        record=OriginRecord(rec.key, rec.value, tuple(rec.headers or ()), rec.timestamp or None), extra=more)


class KafkaDeadLetters:
    """Writes dead letters to ``topic`` with one shared (thread-safe) producer."""

    def __init__(self, producer_config: Mapping[str, Any], topic: str, *, timeout: float = 30.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self.producer = Producer(dict(producer_config))

    def send(self, owner_id: str, kind: str, group_topic: str, rec: Record, error: str,
             extra: Mapping[str, Any] | None = None) -> None:
        """Write the letter and wait for the broker's acknowledgement (one owner's sink sends one at a time)."""
        deliver(self.producer, self.topic, [sink_letter(owner_id, kind, group_topic, rec, error, extra)], self.timeout,
                "dead letter")

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
