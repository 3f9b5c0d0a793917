"""SchemaStore / SchemaPublisher: in memory (unit) and against a real schemas topic (integration)."""

from __future__ import annotations

import decimal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cdx.codec import (
    Column,
    LogicalType,
    SchemaPublisher,
    SchemaStore,
    SingleObjectCodec,
    SourceInfo,
    TableSchemas,
    ensure_schemas_topic,
    make_envelope,
)
from cdx.codec.errors import SchemaConflictError, UnknownSchemaError
from cdx.codec.partition import PRODUCER_PARTITIONER_CONFIG, murmur2_partition
from cdx.codec.schema_store import fingerprint_key

L = LogicalType
SRC = SourceInfo("sqlserver", "hq", "AxDB", "dbo", "T", 1, 1)


def _table(scale: int = 2, extra: bool = False, name: str = "hq.dbo.T") -> TableSchemas:
    cols = [Column("id", L.INT64, primary_key=True), Column("price", L.DECIMAL, precision=18, scale=scale)]
    if extra:
        cols.append(Column("note", L.STRING))
    return TableSchemas.build(name, cols)


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any = None) -> None:
        self.records.append((topic, key, value))
        if on_delivery is not None:
            on_delivery(None, None)

    def flush(self, timeout: float = -1) -> int:
        return 0


# -- unit -----------------------------------------------------------------------------------------

def test_memory_store_register_resolve() -> None:
    store = SchemaStore()
    ts = _table()
    fp = store.register(ts.value)
    assert fp == ts.value.fingerprint and len(fp) == 8
    assert store.resolve(fp) is ts.value
    assert store.resolve(ts.value.fingerprint_hex) is ts.value
    assert store.resolve(int.from_bytes(ts.value.fingerprint, "little", signed=True)) is ts.value
    assert ts.value.fingerprint in store and len(store) == 1
    with pytest.raises(UnknownSchemaError, match="no schemas topic"):
        store.resolve(b"\x00" * 8)
    with pytest.raises(SchemaConflictError):
        store.register(_table(scale=4).value)
    assert store.register(ts.value.text) == fp  # idempotent
    assert fingerprint_key(-1) == "ff" * 8
    with pytest.raises(ValueError):
        fingerprint_key("xyz")


def test_publisher_transaction_bookkeeping() -> None:
    producer = FakeProducer()
    pub = SchemaPublisher(producer, "schemas")
    ts = _table()
    assert pub.publish(ts.value) is True
    assert pub.publish(ts.value) is False  # pending in this transaction
    assert producer.records == [("schemas", ts.value.fingerprint_hex.encode(), ts.value.text.encode())]
    pub.transaction_aborted()
    assert pub.publish(ts.value) is True  # the aborted one must be written again
    pub.transaction_committed()
    assert pub.publish(ts.value) is False and pub.published == {ts.value.fingerprint_hex}
    assert len(producer.records) == 2

    plain = SchemaPublisher(FakeProducer(), "schemas", transactional=False)
    assert plain.publish(ts.key) is True and plain.publish(ts.key) is False


def test_codec_publishes_each_new_writer_schema_once() -> None:
    producer = FakeProducer()
    codec = SingleObjectCodec(SchemaStore(), SchemaPublisher(producer, "schemas"))
    ts = _table()
    for i in range(3):
        codec.encode_key("t", ts.key, {"id": i})
        codec.encode_value("t", ts.value, make_envelope("c", after={"id": i}, source=SRC, ts_ms=1))
    assert [r[1].decode() for r in producer.records] == [ts.key.fingerprint_hex, ts.value.fingerprint_hex]


# -- integration ----------------------------------------------------------------------------------

def _txn_producer(kafka: str) -> Any:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": kafka, "transactional.id": f"cdx-test-{uuid.uuid4().hex}",
                  **PRODUCER_PARTITIONER_CONFIG})
    p.init_transactions(30)
    return p


@pytest.mark.integration
def test_ensure_schemas_topic_is_compacted(kafka: str) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = f"_cdx-schemas-{uuid.uuid4().hex[:8]}"
    assert ensure_schemas_topic(kafka, topic) is True
    assert ensure_schemas_topic(kafka, topic) is False
    admin = AdminClient({"bootstrap.servers": kafka})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["cleanup.policy"].value == "compact"


@pytest.mark.integration
def test_publish_in_transaction_then_resolve_elsewhere(kafka: str, topic_factory: Callable[..., str]) -> None:
    schemas = topic_factory("schemas", compact=True)
    data_topic = topic_factory("data", partitions=3)
    producer = _txn_producer(kafka)
    writer = SingleObjectCodec(SchemaStore(kafka, schemas), SchemaPublisher(producer, schemas))
    ts = _table()

    producer.begin_transaction()
    k = writer.encode_key(data_topic, ts.key, {"id": 1})
    v = writer.encode_value(data_topic, ts.value, make_envelope(
        "c", after={"id": 1, "price": decimal.Decimal("1.25")}, source=SRC, ts_ms=1))
    producer.produce(data_topic, key=k, value=v)
    producer.commit_transaction(30)
    writer.publisher.transaction_committed()  # type: ignore[union-attr]

    with SchemaStore(kafka, schemas, timeout=30) as store:
        reader = SingleObjectCodec(store)
        assert reader.decode_value(data_topic, v)["after"]["price"] == decimal.Decimal("1.25")  # type: ignore[index]
        assert reader.decode_key(data_topic, k) == {"id": 1}
        assert len(store) == 2

        # A later schema is found by an incremental read of the topic.
        ts2 = _table(extra=True)
        producer.begin_transaction()
        v2 = writer.encode_value(data_topic, ts2.value, make_envelope(
            "c", after={"id": 2, "note": "n"}, source=SRC, ts_ms=1))
        producer.commit_transaction(30)
        assert reader.decode_value(data_topic, v2)["after"]["note"] == "n"  # type: ignore[index]
        assert len(store) == 3


@pytest.mark.integration
def test_aborted_schema_is_not_visible_and_is_published_again(kafka: str,
                                                              topic_factory: Callable[..., str]) -> None:
    schemas = topic_factory("schemas", compact=True)
    producer = _txn_producer(kafka)
    publisher = SchemaPublisher(producer, schemas)
    ts = _table()

    producer.begin_transaction()
    assert publisher.publish(ts.value)
    producer.abort_transaction(30)
    publisher.transaction_aborted()
    with SchemaStore(kafka, schemas, timeout=30) as store, pytest.raises(UnknownSchemaError):
        store.resolve(ts.value.fingerprint)

    producer.begin_transaction()
    assert publisher.publish(ts.value)
    producer.commit_transaction(30)
    publisher.transaction_committed()
    with SchemaStore(kafka, schemas, timeout=30) as store:
        assert store.resolve(ts.value.fingerprint) == ts.value


@pytest.mark.integration
def test_open_transaction_does_not_block_readers(kafka: str, topic_factory: Callable[..., str]) -> None:
    schemas = topic_factory("schemas", compact=True)
    committed = SchemaPublisher(_txn_producer(kafka), schemas)
    committed.producer.begin_transaction()
    committed.publish(_table().key)
    committed.producer.commit_transaction(30)

    producer = _txn_producer(kafka)
    producer.begin_transaction()
    SchemaPublisher(producer, schemas).publish(_table().value)
    producer.flush(30)
    try:
        with SchemaStore(kafka, schemas, timeout=20) as store:
            started = time.monotonic()
            assert store.resolve(_table().key.fingerprint) == _table().key
            with pytest.raises(UnknownSchemaError):
                store.resolve(_table().value.fingerprint)  # not committed yet
            assert time.monotonic() - started < 15
    finally:
        producer.abort_transaction(30)


@pytest.mark.integration
def test_missing_topic_and_earlier_run_conflicts(kafka: str, topic_factory: Callable[..., str]) -> None:
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    with SchemaStore(kafka, missing, timeout=20) as store, pytest.raises(UnknownSchemaError):
        store.resolve(_table().value.fingerprint)

    schemas = topic_factory("schemas", compact=True)
    plain = SchemaPublisher(_plain_producer(kafka), schemas, transactional=False)
    assert plain.publish(_table(scale=2).value)
    # A later run (fresh store) with a changed decimal scale: caught against the topic.
    with SchemaStore(kafka, schemas, timeout=30) as store, pytest.raises(SchemaConflictError):
        store.register(_table(scale=4).value)
    with SchemaStore(kafka, schemas, timeout=30) as store:
        cols = [Column("id", L.INT64, primary_key=True), Column("price", L.DECIMAL, precision=18, scale=4)]
        assert store.register_table("hq.dbo.T", cols).value_generation == 1


def _plain_producer(kafka: str) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": kafka, **PRODUCER_PARTITIONER_CONFIG})


@pytest.mark.integration
def test_librdkafka_murmur2_random_matches_murmur2_partition(kafka: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory("part", partitions=7)
    producer = _plain_producer(kafka)
    ts = _table()
    codec = SingleObjectCodec()
    keys = [codec.encode_key(topic, ts.key, {"id": i}) for i in range(200)] + [f"k{i}".encode() for i in range(50)]
    got: dict[bytes, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        got[msg.key()] = msg.partition()

    for k in keys:
        producer.produce(topic, key=k, value=b"x", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert got == {k: murmur2_partition(k, 7) for k in keys}
