"""``cdx topic tail`` on a real broker: records written by the real producer in each encoding, decoded."""

from __future__ import annotations

import decimal
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cdx.codec import Column, LogicalType, SchemaPublisher, SourceInfo, TableSchemas, ensure_schemas_topic, make_codec
from cdx.codec.envelope import change_records, make_envelope
from cdx.topics import schemas_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, encoding: {encoding}}}
hq: {{name: hq, dialect: sqlite, dsn: "sqlite:///{tmp}/hq.db"}}
"""


def _tail(path: Path, topic: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdx.cli.main", "topic", "tail", topic, "-t", str(path),
                           "--from-beginning", "--idle-exit", "20", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("encoding", ["avro", "connect-json"])
def test_tail_decodes_every_record_and_filters_by_key(kafka: str, topic_factory, tmp_path: Path,
                                                      encoding: str) -> None:
    prefix = f"tail{uuid.uuid4().hex[:6]}"
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=prefix, encoding=encoding, tmp=tmp_path))
    topic = topic_factory(f"{prefix}.hq.dbo.T")
    producer = Producer({"bootstrap.servers": kafka})
    ensure_schemas_topic(kafka, schemas_topic(prefix))
    publisher = SchemaPublisher(producer, schemas_topic(prefix), transactional=False)
    codec = make_codec({"encoding": encoding}, publisher=publisher)
    ts = TableSchemas.build(topic, [Column("ID", LogicalType.INT32, primary_key=True),
                                    Column("PRICE", LogicalType.DECIMAL, precision=10, scale=2)])
    src = SourceInfo("cdx", "hq", "hq", "dbo", "T", 1, 1)
    for i, op in enumerate(("c", "c", "d")):
        row = {"ID": i % 2, "PRICE": decimal.Decimal("1.5")}
        env = make_envelope(op, after=row if op != "d" else None, before=row if op == "d" else None, source=src,
                            ts_ms=i)
        for key, value in change_records(ts.key_of(row), env):
            producer.produce(topic, key=codec.encode_key(topic, ts.key, key),
                             value=codec.encode_value(topic, ts.value, value))
    producer.flush(30)
    everything = _tail(path, topic, "--json", "--max-messages", "4")
    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert everything.returncode == 0, everything.stderr
    assert [(r["key"]["ID"], r["value"] and r["value"]["op"]) for r in lines] == [(0, "c"), (1, "c"), (0, "d"),
                                                                                   (0, None)]
    assert lines[0]["value"]["after"]["PRICE"] == "1.50" and lines[0]["encoding"] == encoding
    one = _tail(path, topic, "--key", "ID=1", "--max-messages", "1")
    assert one.returncode == 0 and one.stdout.startswith('0@1 key={"ID": 1}') and '"op": "c"' in one.stdout
    missing = _tail(path, f"{prefix}.no.such.topic")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
