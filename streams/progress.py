"""How far each group has received each source partition: the transactional engine's backfill state.

Compacted topic ``<prefix>._router_progress`` (1 partition); key ``["<group>", "<topic>", <partition>]``
(JSON), value ``{"next": N}``: every record of the source partition below offset N was routed to
the group (a tombstone: the group no longer receives the topic). The engine writes it in the
same Kafka transaction as the routed records it describes, so after a crash it is exact.

When a worker activates a source partition at consumer position P, a group whose ``next`` is
below P (a new group: no entry, so from the beginning; or a range another worker routed with a
topology that lacked the group, during a rolling reload) is **backfilled** from ``next`` to P
first. Nothing is routed twice and no range is left out, whatever worker routes what.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from cdx.errors import RetriableError
from cdx.kafka.admin import partitions_of
from cdx.kafka.reading import read_range
from cdx.topics import check_topic

Key = tuple[str, str, int]


def progress_topic(prefix: str) -> str:
    """``<prefix>._router_progress``."""
    return check_topic(f"{prefix}._router_progress")


def read_settled(config: Mapping[str, Any], topic: str, start: Mapping[int, int] | None, timeout: float
                 ) -> Iterator[Message]:
    """Every committed record of ``topic`` from ``start`` up to its end as written now, read_committed.

    Unlike reading to the last stable offset, this waits for transactions that are open or
    committing right now to end: a worker taking over a partition sees its previous owner's last
    committed transaction even when the transaction markers are still being written.
    ``RetriableError`` when that takes longer than ``timeout`` (a dead worker's open transaction
    holds the topic until the broker aborts it).
    """
    consumer = Consumer({**config, "group.id": f"cdx-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_uncommitted"})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in partitions_of(config, topic, timeout)}
    except KafkaException as exc:
        raise RetriableError(f"end offsets of {topic}: {exc}") from exc
    finally:
        consumer.close()
    try:
        yield from read_range(config, topic, ends, start, batch=10_000, timeout=timeout)
    except TimeoutError as exc:
        raise RetriableError(f"{topic}: transactions still open after {timeout:.0f}s: {exc}") from exc


def encode_key(k: Key) -> bytes:
    return json.dumps(list(k)).encode()


def encode_next(n: int | None) -> bytes | None:
    return None if n is None else json.dumps({"next": n}).encode()


class Progress:
    """In-memory view of the progress topic plus the open transaction's overlay."""

    def __init__(self, config: Mapping[str, Any], topic: str, timeout: float = 60.0) -> None:
        self.config = dict(config)
        self.topic = topic
        self.timeout = timeout
        self.entries: dict[Key, int] = {}
        self._pending: dict[Key, int | None] = {}
        self._read: dict[int, int] = {}

    def sync(self) -> None:
        """Read what committed transactions added since the last sync (e.g. another worker's progress)."""
        for msg in read_settled(self.config, self.topic, self._read or None, self.timeout):
            self._read[msg.partition() or 0] = (msg.offset() or 0) + 1
            raw = msg.key()
            if raw is None:
                continue
            g, t, p = json.loads(raw)
            k = (str(g), str(t), int(p))
            value = msg.value()
            if value is None:
                self.entries.pop(k, None)
            else:
                self.entries[k] = int(json.loads(value)["next"])

    def get(self, group: str, topic: str, partition: int) -> int | None:
        k = (group, topic, partition)
        if k in self._pending:
            return self._pending[k]
        return self.entries.get(k)

    def set(self, k: Key, n: int | None) -> bool:
        """Record ``n`` for the open transaction; True when it differs (a record is due)."""
        if self.get(*k) == n:
            return False
        self._pending[k] = n
        return True

    def pending(self) -> dict[Key, int | None]:
        return dict(self._pending)

    def commit(self) -> None:
        for k, n in self._pending.items():
            if n is None:
                self.entries.pop(k, None)
            else:
                self.entries[k] = n
        self._pending = {}

    def abort(self) -> None:
        self._pending = {}

    def keys_for(self, pairs: Iterable[tuple[str, str]]) -> list[Key]:
        wanted = set(pairs)
        return [k for k in self.entries if (k[0], k[1]) in wanted]
