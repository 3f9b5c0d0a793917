"""Writing writer schemas to the schemas topic (see :mod:`cdx.codec.schema_store` for its layout)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from cdx.codec.errors import SchemaStoreUnavailable
from cdx.codec.schema import AvroSchema
from cdx.codec.schema_store import DEFAULT_SCHEMAS_TOPIC

__all__ = ["SchemaPublisher"]


class SchemaPublisher:
    """Writes new writer schemas to the schemas topic with the caller's producer.

    ``publish`` only calls ``producer.produce``: with a transactional producer the schema record is
    part of the caller's open transaction, committed or aborted with the data that uses it. Tell
    the publisher how the transaction ended so an aborted schema is published again:
    ``transaction_committed()`` after ``commit_transaction``, ``transaction_aborted()`` after
    ``abort_transaction``. With ``transactional=False`` each new schema is flushed at once, so it is
    in the topic before any record that uses it.

    Idempotent: key = fingerprint, so a repeated publish only adds a duplicate that compaction removes.
    """

    def __init__(self, producer: Any, topic: str = DEFAULT_SCHEMAS_TOPIC, *, transactional: bool = True,
                 flush_timeout: float = 30.0) -> None:
        self.producer = producer
        self.topic = topic
        self.transactional = transactional
        self.flush_timeout = flush_timeout
        self._published: set[str] = set()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, schema: AvroSchema | Mapping[str, Any] | str) -> bool:
        """Produce ``schema`` unless already published (or pending in this transaction). True if produced."""
        s = AvroSchema.of(schema)
        key = s.fingerprint_hex
        with self._lock:
            if key in self._published or key in self._pending:
                return False
            if self.transactional:
                self.producer.produce(self.topic, key=key.encode("ascii"), value=s.text.encode("utf-8"))
                self._pending.add(key)
                return True
        errors: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        self.producer.produce(self.topic, key=key.encode("ascii"), value=s.text.encode("utf-8"),
                              on_delivery=delivered)
        remaining = self.producer.flush(self.flush_timeout)
        if remaining or errors:
            why = errors[0] if errors else f"not delivered in {self.flush_timeout}s"
            raise SchemaStoreUnavailable(f"schema {key} not published to {self.topic!r}: {why}")
        with self._lock:
            self._published.add(key)
        return True

    def transaction_committed(self) -> None:
        with self._lock:
            self._published |= self._pending
            self._pending.clear()

    def transaction_aborted(self) -> None:
        with self._lock:
            self._pending.clear()

    @property
    def published(self) -> frozenset[str]:
        """Fingerprints (hex) known to be in the topic (committed)."""
        return frozenset(self._published)
