"""cdx.kafka helpers against the real broker."""

from __future__ import annotations

import uuid

import pytest

from cdx.errors import FatalError
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics, partitions_of
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.reading import high_watermarks, read_to_end
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


def test_next_batch_hands_on_a_single_message_without_waiting_for_a_full_batch(kafka: str, topic_factory) -> None:
    import time

    from confluent_kafka import Consumer, Producer

    from cdx.kafka.batches import next_batch

    topic = topic_factory("nb", partitions=1)
    base = client_config(kafka)
    consumer = Consumer({**base, "group.id": f"nb-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        producer = Producer(producer_config(base))
        for i in range(3):
            producer.produce(topic, f"v{i}".encode())
        producer.flush(10)
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m for m in next_batch(consumer, 5000, 1.0) if m.error() is None]
        assert [m.value() for m in got] == [b"v0", b"v1", b"v2"]
        producer.produce(topic, b"one")
        producer.flush(10)
        start = time.monotonic()
        batch: list = []
        while not batch:
            batch = [m for m in next_batch(consumer, 5000, 20.0) if m.error() is None]
        assert [m.value() for m in batch] == [b"one"]
        assert time.monotonic() - start < 10  # consume(5000, 20.0) would have waited the full 20 s
        assert next_batch(consumer, 5000, 0.1) == []
    finally:
        consumer.close()


def test_transactional_producers_retry_concurrent_transactions_quickly() -> None:
    """A transaction that follows a commit at once gets CONCURRENT_TRANSACTIONS while the markers are written;
    the default 100 ms retry back-off made that a pause on nearly every router transaction (bench.e2e)."""
    txn = producer_config({"bootstrap.servers": "x"}, transactional_id="t")
    assert txn["retry.backoff.ms"] <= 10 and txn["retry.backoff.max.ms"] >= 1000
    assert "retry.backoff.ms" not in producer_config({"bootstrap.servers": "x"})
