"""``cdx demo``: the main job. Until the pipeline lands it runs a smoke round trip
through the real local broker and database, so `make demo` proves the set-up works."""

from __future__ import annotations

import time
import uuid

import typer

from cdx.cli.app import console, user_errors
from cdx.errors import FatalError

app = typer.Typer(help="Run the demo exchange.", invoke_without_command=True)


@app.callback()
@user_errors
def demo(records: int = typer.Option(1000, help="Records in the smoke round trip.")) -> None:
    """Smoke round trip: Kafka produce/consume (idempotent, transactional) and a SQLite write."""
    import sqlite3

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from infra.kafka import launcher

    try:
        bootstrap = launcher.up(1)
    except launcher.KafkaLauncherError as exc:
        raise FatalError(str(exc)) from exc
    topic = f"cdx-smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    start = time.perf_counter()
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(records):
        producer.produce(topic, key=str(i).encode(), value=f"row-{i}".encode())
    producer.commit_transaction(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE smoke (k TEXT PRIMARY KEY, v TEXT)")
    got = 0
    deadline = time.monotonic() + 30
    while got < records and time.monotonic() < deadline:
        batch = consumer.consume(500, timeout=1)
        rows = [(bytes(m.key() or b"").decode(), bytes(m.value() or b"").decode()) for m in batch if m.error() is None]
        db.executemany("INSERT INTO smoke VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", rows)
        db.commit()
        got += len(rows)
    consumer.close()
    admin.delete_topics([topic])
    elapsed = time.perf_counter() - start
    (count,) = db.execute("SELECT count(*) FROM smoke").fetchone()
    if count != records:
        raise FatalError(f"smoke round trip lost records: {count} of {records} arrived")
    console.print(f"[green]ok[/] {records} records through Kafka at {bootstrap} into SQLite in {elapsed:.2f}s")
