"""Channel upload and HQ upload sink with ``kafka.encoding: connect-json``: the upload topic carries Kafka
Connect JSON (a Connect sink could read it) and every row still reaches HQ exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdx.codec.sniff import encoding_of
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import upload_topic
from tests.upload.helpers import (
    assert_channel_at_hq,
    create_databases,
    dead_letters,
    expected_rows,
    hq_count,
    make_topology,
    sell,
    upload_records,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_upload_in_connect_json_reaches_hq_once(tmp_path: Path, kafka: str, running) -> None:
    channels = ["s01", "s02"]
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", channels, encoding="connect-json")
    create_databases(topo)
    for i, c in enumerate(channels):
        sell(topo, c, 10, seed=i)
    run = running(topo)
    want = expected_rows(topo)
    wait_until(lambda: hq_count(topo) >= want, 90, "HQ to receive every row", check=run.check)
    run.stop()
    for c in channels:
        assert_channel_at_hq(topo, c)
        raw = list(read_to_end(client_config(topo.kafka.bootstrap_servers), upload_topic(topo.kafka.topic_prefix, c)))
        assert raw and {encoding_of(m.key()) for m in raw} == {encoding_of(m.value()) for m in raw} == {"connect-json"}
        records = upload_records(topo, c)
        keys = [(k["table"], k["counter"]) for k, _, _ in records]
        assert len(keys) == len(set(keys))
        assert records[0][1]["source"]["change_version"] == records[0][0]["counter"]
    assert hq_count(topo) == want and not dead_letters(topo)
