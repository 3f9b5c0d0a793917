"""librdkafka client configuration from cdx settings.

Security keys (``security.protocol``, ``sasl.*``, ``ssl.*``) are passed through to
librdkafka unchanged. librdkafka's own log lines go to the Python logger
``cdx.kafka.librdkafka`` instead of stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

LIBRDKAFKA_LOGGER = logging.getLogger("cdx.kafka.librdkafka")

# Java's default partitioner hashes keys with murmur2: use the same so Java clients agree.
PARTITIONER = "murmur2_random"


def client_config(bootstrap_servers: str, security: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka configuration dict: bootstrap + security passthrough + ``extra``.

    ``extra`` keys may use underscores for dots (``group_id`` -> ``group.id``).
    """
    return {"bootstrap.servers": bootstrap_servers, "logger": LIBRDKAFKA_LOGGER, **(security or {}), **_dotted(extra)}


def _dotted(extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` with underscores in its keys as dots (``group_id`` -> ``group.id``)."""
    return {key.replace("_", "."): value for key, value in extra.items()}


def size_limited(config: Mapping[str, Any], max_message_bytes: int) -> dict[str, Any]:
    """``config`` with librdkafka's ``message.max.bytes`` raised to ``max_message_bytes`` (the topics
    must allow it too: ``cdx.kafka.admin.max_message_config``)."""
    return {**config, "message.max.bytes": int(max_message_bytes)}


RECORD_OVERHEAD = 1024
"""Bytes kept free below ``max_message_bytes`` for the record and batch headers."""


def oversize_reason(size: int, limit: int) -> str | None:
    """Why a record of ``size`` bytes cannot be published under ``kafka.max_message_bytes`` = ``limit``
    (None: it can)."""
    if size + RECORD_OVERHEAD <= limit:
        return None
    return (f"record of {size:,} bytes exceeds kafka.max_message_bytes ({limit:,} bytes, less {RECORD_OVERHEAD}"
            f" for headers); raise the setting or shrink the row")


TRANSACTIONAL_RETRY = {"retry.backoff.ms": 5, "retry.backoff.max.ms": 1000}
"""Retry back-off of transactional producers. A transaction that starts right after a commit finds the
coordinator still writing the previous one's markers: the broker answers CONCURRENT_TRANSACTIONS and
librdkafka retries after ``retry.backoff.ms``, 100 ms by default, a pause on nearly every transaction of a busy
router or capture (confluent-kafka-python issue #967). From 5 ms, doubling up to 1 s, the retry comes as
soon as the markers are written and a broker outage still backs off. Measured on ``bench.e2e``'s steady
1,000 changes/s: p99 HQ -> channel 295 -> 129 ms, p50 138 -> 67 ms (docs/performance.md)."""


def producer_config(base: Mapping[str, Any], *, transactional_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Producer settings for cdx: idempotent, acks=all, murmur2 partitioning, lz4, small linger."""
    config = {**base, "enable.idempotence": True, "acks": "all", "partitioner": PARTITIONER, "compression.type": "lz4",
              "linger.ms": 5, "batch.size": 1_000_000}
    if transactional_id:
        config.update({"transactional.id": transactional_id, "transaction.timeout.ms": 60_000, **TRANSACTIONAL_RETRY})
    return {**config, **_dotted(extra)}


def consumer_config(base: Mapping[str, Any], group_id: str, **extra: Any) -> dict[str, Any]:
    """Consumer settings for cdx: read_committed, no auto commit (offsets are stored by the sink)."""
    return {**base, "group.id": group_id, "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed",
            "partition.assignment.strategy": "cooperative-sticky", **_dotted(extra)}
