"""The parts are real: a KRaft broker, a 3-broker cluster surviving kill -9, PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def _consume_all(bootstrap: str, topic: str, expected: int, *, isolation: str = "read_committed",
                 timeout: float = 60.0) -> list[bytes]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": isolation, "log_level": 0,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.5)
            if not batch:
                if len(values) >= expected and time.monotonic() - idle_since > 1.0:
                    break
                continue
            idle_since = time.monotonic()
            for msg in batch:
                if msg.error() is None:
                    values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_idempotent_produce_consume_10000(kafka: str, topic_factory) -> None:
    topic = topic_factory("rt", partitions=3)
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "partitioner": "murmur2_random"})
    for i in range(10_000):
        producer.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    values = _consume_all(kafka, topic, 10_000)
    assert len(values) == 10_000
    assert set(values) == {f"v{i}".encode() for i in range(10_000)}


def test_aborted_transaction_is_invisible_to_read_committed(kafka: str, topic_factory) -> None:
    topic = topic_factory("tx")
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": f"tx-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(100):
        producer.produce(topic, value=f"aborted-{i}".encode())
    producer.flush(10)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    committed = _consume_all(kafka, topic, 10)
    assert sorted(committed) == sorted(f"committed-{i}".encode() for i in range(10))
    uncommitted = _consume_all(kafka, topic, 110, isolation="read_uncommitted")
    assert len(uncommitted) == 110  # the aborted records are really in the log


@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_survives_kill9_of_partition_leader(kafka_cluster) -> None:
    bootstrap = kafka_cluster.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    topic = f"ha-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(30)  # cluster defaults: RF 3
    deadline = time.monotonic() + 30  # created on the controller; the brokers learn it a moment later
    while True:
        md = admin.list_topics(topic, timeout=10).topics[topic]
        if md.error is None and 0 in md.partitions and md.partitions[0].leader >= 0:
            break
        assert time.monotonic() < deadline, f"topic {topic} has no leader after 30s: {md.error}"
        time.sleep(0.2)
    assert len(md.partitions[0].replicas) == 3
    leader = md.partitions[0].leader

    acked: list[bytes] = []
    failed: list[bytes] = []

    def on_delivery(err, msg) -> None:
        (failed if err else acked).append(msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "message.timeout.ms": 60000, "linger.ms": 2, "log_level": 0})
    killed = None
    try:
        for i in range(20_000):
            while True:
                try:
                    producer.produce(topic, value=f"r{i}".encode(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            if i == 5_000:
                producer.flush(30)
                killed = kafka_cluster.kill9(leader)
        assert producer.flush(90) == 0
        assert killed is not None
        assert len(acked) + len(failed) == 20_000
        consumed = set(_consume_all(bootstrap, topic, len(acked), timeout=90))
        missing = [v for v in acked if v not in consumed]
        assert not missing, f"{len(missing)} acknowledged records lost"
        assert len(acked) >= 19_000
    finally:
        kafka_cluster.up()  # bring the killed broker back for later tests
        tp_md = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
        assert tp_md.leader >= 0


def test_postgres_round_trip(postgres: str) -> None:
    import psycopg

    with psycopg.connect(postgres) as conn:
        conn.execute("CREATE TABLE rt (id int PRIMARY KEY, name text NOT NULL)")
        with conn.cursor() as cur, cur.copy("COPY rt (id, name) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"n{i}"))
        conn.commit()
    with psycopg.connect(postgres) as conn:
        count, total = conn.execute("SELECT count(*), sum(id) FROM rt").fetchone()  # type: ignore[misc]
    assert (count, total) == (1000, sum(range(1000)))



def test_postgres_logical_decoding_on_request(postgres: str) -> None:
    """``up(logical=True)`` gives a server with ``wal_level = logical`` (the peer benchmark's Debezium source
    needs it): a logical slot there sees a committed insert."""
    import psycopg

    from cdx.infra.postgres import launcher

    try:
        launcher.up(logical=True)
    except launcher.PostgresError as exc:  # a server the launcher did not start and must not restart
        pytest.skip(str(exc))
    slot = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("CREATE TABLE ld (id int PRIMARY KEY)")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        try:
            conn.execute("INSERT INTO ld VALUES (7)")
            changes = [r[0] for r in conn.execute("SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL)",
                                                   (slot,)).fetchall()]
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    assert any("INSERT" in c and "id[integer]:7" in c for c in changes), changes
