"""``cdx status --json``: lag in records and seconds while the sinks are stopped, then caught up once
they run; reachability; roles from consumer-group membership and capture positions; table output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topics import positions_topic
from tests.sink.helpers import Db, FakeRouter, pg_db, sqlite_db, wait_until, workload, write_topology
from tests.sink_ops.helpers import by_db, caught_up, host_state, status_app, status_json

pytestmark = pytest.mark.integration


def test_status_shows_lag_then_catches_up(tmp_path: Path, kafka: str, postgres_server: str, run_host) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    c2 = pg_db(postgres_server, "c2", recid=2)
    down = Db("c3", "postgresql", postgres_server.rsplit("/", 1)[0] + "/no_such_database_cdx")
    path, topo = write_topology(tmp_path, kafka, [c1, c2, down])
    router = FakeRouter(topo)
    workload(router, 600, seed=2, keys=100)
    router.flush()
    ends = router.ends()
    time.sleep(1.2)

    before = status_json(path)
    dbs = by_db(before)
    assert before["kafka_reachable"] and not before["warnings"], before["warnings"]
    for owner in ("c1", "c2"):
        d = dbs[owner]
        assert d["reachable"] and d["sink_running"] is False and d["error"] is None
        assert d["lag_records"] == sum(ends.values()) > 0
        assert d["lag_seconds"] >= 1.0
        assert d["last_applied"] is None and d["last_error"] is None and d["dead_letters"] == 0
        assert d["end_offsets"] == {str(p): e for p, e in ends.items()}
    assert dbs["c3"]["reachable"] is False and "no_such_database_cdx" in dbs["c3"]["error"]
    roles = {(r["role"], r["name"]): r for r in before["roles"]}
    assert roles[("capture", "hq")]["running"] is False
    assert roles[("router", f"{topo.kafka.topic_prefix}-router")]["running"] is False
    assert roles[("hq-upload-sink", f"{topo.kafka.topic_prefix}-hq-upload")]["running"] is False
    assert roles[("sink", "c1")]["running"] is False

    host = run_host(topo, ["c1", "c2"])
    wait_until(lambda: caught_up(host, router), 60, "sinks to catch up", lambda: host_state(host))
    after = status_json(path, "--no-uploads")
    dbs = by_db(after)
    for owner in ("c1", "c2"):
        d = dbs[owner]
        assert d["lag_records"] == 0 and d["lag_seconds"] == 0 and d["sink_running"] is True
        assert d["stored_offsets"] == {str(p): e for p, e in ends.items()}
        assert d["last_applied"]["session"] and d["last_applied"]["kind"] == "batch"
        assert d["last_applied"]["source_time"] is not None
    (member,) = {r["name"]: r for r in after["roles"]}["c1"]["members"]
    assert member.startswith(f"{topo.kafka.topic_prefix}-sink-c1@")  # the static member id

    # more changes while running: status shows them applied
    workload(router, 200, seed=3, keys=100)
    router.flush()
    wait_until(lambda: caught_up(host, router), 60, "sinks to catch up again")
    assert by_db(status_json(path, "--channel", "c2", "--no-uploads"))["c2"]["lag_records"] == 0

    # capture is running while its positions are fresh
    k = topo.kafka
    config = client_config(k.bootstrap_servers)
    ensure_topics(config, [TopicSpec(positions_topic(k.topic_prefix), 1, 1, COMPACTED)])
    producer = Producer(config)
    producer.produce(positions_topic(k.topic_prefix), key=b"hq/dbo.PARENT",
                     value=json.dumps({"version": 7, "ts_ms": int(time.time() * 1000)}).encode())
    producer.flush(10)
    roles = {r["role"]: r for r in status_json(path, "--no-uploads")["roles"]}
    assert roles["capture"]["running"] is True and "last position" in roles["capture"]["detail"]

    res = CliRunner().invoke(status_app, ["--topology", str(path)])
    assert res.exit_code == 0, res.output
    assert "Channel and register databases" in res.output and "c3" in res.output and "Roles" in res.output
