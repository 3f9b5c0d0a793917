"""cdx.kafka helpers against the real broker."""

from __future__ import annotations

import uuid

import pytest

from cdx.errors import FatalError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, partitions_of
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.reading import group_lag, high_watermarks, read_to_end
from cdx.kafka.transactions import TransactionalProducer

pytestmark = pytest.mark.integration


def test_ensure_topics_is_idempotent(kafka: str) -> None:
    base = client_config(kafka)
    name = f"ens-{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name, partitions=3, replication_factor=1, configs=COMPACTED)
    assert ensure_topics(base, [spec]) == [name]
    assert ensure_topics(base, [spec]) == []
    assert partitions_of(base, name) == [0, 1, 2]


def test_read_to_end_skips_aborted_and_stops_at_markers(kafka: str, topic_factory) -> None:
    topic = topic_factory("rte", partitions=2)
    base = client_config(kafka)
    tp = TransactionalProducer(producer_config(base, transactional_id=f"rte-{uuid.uuid4().hex}"))
    tp.begin()
    for i in range(50):
        tp.produce(topic, f"a{i}".encode(), key=str(i).encode())
    tp.commit()
    tp.begin()
    for i in range(20):
        tp.produce(topic, f"x{i}".encode(), key=str(i).encode())
    tp.producer.flush(10)
    tp.abort()
    values = [m.value() for m in read_to_end(base, topic)]
    assert sorted(values) == sorted(f"a{i}".encode() for i in range(50))
    assert sum(high_watermarks(base, topic).values()) >= 70
    assert sum(group_lag(base, "nobody", topic).values()) >= 70


def test_fenced_producer_raises_fatal(kafka: str, topic_factory) -> None:
    topic = topic_factory("fence")
    base = client_config(kafka)
    txid = f"fence-{uuid.uuid4().hex}"
    first = TransactionalProducer(producer_config(base, transactional_id=txid))
    TransactionalProducer(producer_config(base, transactional_id=txid))  # fences the first
    with pytest.raises(FatalError):
        first.begin()
        first.produce(topic, b"v")
        first.commit()
