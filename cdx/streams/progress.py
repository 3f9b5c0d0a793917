"""How far each group has received each source partition: the transactional engine's backfill state.

Compacted topic ``<prefix>._router_progress`` (1 partition); key ``["<group>", "<topic>", <partition>]``
(JSON), value ``{"next": N, "shape": {...}}``: every record of the source partition below offset N
was routed to the group, under that **shape** (``cdx.streams.reshape``: the columns and scope it was routed
with; absent in progress written before shapes existed); a tombstone: the group no longer receives
the topic. The engine writes it in the
same Kafka transaction as the routed records it describes, so after a crash it is exact.

When a worker activates a source partition at consumer position P, a group whose ``next`` is
below P (a new group: no entry, so from the beginning; or a range another worker routed with a
topology that lacked the group, during a rolling reload) is **backfilled** from ``next`` to P
first. Nothing is routed twice and no range is left out, whatever worker routes what.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import KafkaException, Message

from cdx.errors import RetriableError
from cdx.kafka.reading import high_watermarks, read_range

Key = tuple[str, str, int]


def read_settled(config: Mapping[str, Any], topic: str, start: Mapping[int, int] | None, timeout: float
                 ) -> Iterator[Message]:
    """Every committed record of ``topic`` from ``start`` up to its end as written now, read_committed.

    Unlike reading to the last stable offset, this waits for transactions that are open or
    committing right now to end: a worker taking over a partition sees its previous owner's last
    committed transaction even when the transaction markers are still being written.
    ``RetriableError`` when that takes longer than ``timeout`` (a dead worker's open transaction
    holds the topic until the broker aborts it).
    """
    try:
        ends = high_watermarks(config, topic, timeout, committed=False)
    except KafkaException as exc:
        raise RetriableError(f"end offsets of {topic}: {exc}") from exc
    try:
        yield from read_range(config, topic, ends, start, batch=10_000, timeout=timeout)
    except TimeoutError as exc:
        raise RetriableError(f"{topic}: transactions still open after {timeout:.0f}s: {exc}") from exc


def encode_key(k: Key) -> bytes:
    return json.dumps(list(k)).encode()


def encode_next(n: int | None, shape: Mapping[str, Any] | None = None) -> bytes | None:
    if n is None:
        return None
    return json.dumps({"next": n} if shape is None else {"next": n, "shape": dict(shape)}).encode()


class Progress:
    """In-memory view of the progress topic plus the open transaction's overlay."""

    def __init__(self, config: Mapping[str, Any], topic: str, timeout: float = 60.0) -> None:
        self.config = dict(config)
        self.topic = topic
        self.timeout = timeout
        self.entries: dict[Key, int] = {}
        self.shapes: dict[Key, dict[str, Any]] = {}
        self._pending: dict[Key, int | None] = {}
        self._pending_shapes: dict[Key, dict[str, Any]] = {}
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
                self.shapes.pop(k, None)
            else:
                decoded = json.loads(value)
                self.entries[k] = int(decoded["next"])
                if isinstance(decoded.get("shape"), dict):
                    self.shapes[k] = decoded["shape"]
                else:
                    self.shapes.pop(k, None)

    def get(self, group: str, topic: str, partition: int) -> int | None:
        k = (group, topic, partition)
        if k in self._pending:
            return self._pending[k]
        return self.entries.get(k)

    def shape(self, k: Key) -> dict[str, Any] | None:
        """The shape ``k`` was routed under (``cdx.streams.reshape``), None when none is recorded."""
        if k in self._pending_shapes:
            return self._pending_shapes[k]
        if k in self._pending and self._pending[k] is None:
            return None
        return self.shapes.get(k)

    def set(self, k: Key, n: int | None) -> bool:
        """Record ``n`` for the open transaction; True when it differs (a record is due)."""
        if self.get(*k) == n:
            return False
        self._pending[k] = n
        return True

    def set_shape(self, k: Key, shape: Mapping[str, Any]) -> bool:
        """Record the shape of ``k`` for the open transaction; True when it differs (a record is due)."""
        if self.shape(k) == dict(shape):
            return False
        self._pending_shapes[k] = dict(shape)
        return True

    def encoded(self, k: Key) -> bytes | None:
        """The progress record value of ``k`` as it stands in the open transaction."""
        n = self.get(*k)
        return encode_next(n, self.shape(k) if n is not None else None)

    def commit(self) -> None:
        for k, n in self._pending.items():
            if n is None:
                self.entries.pop(k, None)
                self.shapes.pop(k, None)
            else:
                self.entries[k] = n
        for k, shape in self._pending_shapes.items():
            if k in self.entries:
                self.shapes[k] = shape
        self._pending = {}
        self._pending_shapes = {}

    def abort(self) -> None:
        self._pending = {}
        self._pending_shapes = {}

    def keys_for(self, pairs: Iterable[tuple[str, str]]) -> list[Key]:
        wanted = set(pairs)
        return [k for k in self.entries if (k[0], k[1]) in wanted]
