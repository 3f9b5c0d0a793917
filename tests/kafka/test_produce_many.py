"""``TransactionalProducer.produce_many``: the records of ``produce``, in order, on the same partitions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.kafka.reading import read_to_end
from cdx.kafka.transactions import TransactionalProducer

pytestmark = pytest.mark.integration


def _read(config: dict, topic: str) -> dict[int, list[tuple[Any, Any, Any]]]:
    out: dict[int, list[tuple[Any, Any, Any]]] = {}
    for m in read_to_end(config, topic):
        out.setdefault(m.partition() or 0, []).append((m.key(), m.value(), m.headers()))
    return out


def test_produce_many_matches_produce(kafka: str) -> None:
    config = client_config(kafka, None)
    tag = uuid.uuid4().hex[:8]
    many, single, headed = f"pm-{tag}-many", f"pm-{tag}-single", f"pm-{tag}-headed"
    ensure_topics(config, [TopicSpec(t, 3, 1, {}) for t in (many, single, headed)])
    messages: list[dict[str, Any]] = []
    for i in range(2500):  # three chunks; a key changed twice, deletes followed by tombstones
        key = f"k{i % 700}".encode()
        messages.append({"key": key, "value": f"v{i}".encode()})
        if i % 9 == 0:
            messages.append({"key": key, "value": None})
    tx = TransactionalProducer(producer_config(config, transactional_id=f"pm-{tag}"))
    tx.begin()
    tx.produce_many(many, [dict(m) for m in messages])
    tx.produce_many(headed, [{**m, "headers": [("h", b"1")]} for m in messages[:50]])
    tx.commit()
    tx.close()
    plain = Producer(producer_config(config))
    for m in messages:
        plain.produce(single, m["value"], key=m["key"])
    plain.flush(30)

    got = _read(config, many)
    assert {p: [(k, v) for k, v, _ in rs] for p, rs in got.items()} == \
        {p: [(k, v) for k, v, _ in rs] for p, rs in _read(config, single).items()}
    assert sum(len(rs) for rs in got.values()) == len(messages)
    with_headers = [h for rs in _read(config, headed).values() for _, _, h in rs]
    assert len(with_headers) == 50 and all(h == [("h", b"1")] for h in with_headers)
