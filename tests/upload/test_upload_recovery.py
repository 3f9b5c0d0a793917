"""A channel's upload producer fenced mid-load (what a broker failover that moves its transaction
coordinator does) recovers in process (issue #16): the uploader goes on by itself, HQ ends with every
channel row exactly once, and the other channels are unaffected. With ``--ha`` the channel recovers
because it still holds its lease."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from cdx.connectors.upload.sink import SinkOptions, UploadSink
from cdx.connectors.upload.uploader import ChannelUploader, UploadConnector
from cdx.kafka.config import client_config, producer_config
from tests.upload.conftest import FAST
from tests.upload.helpers import (
    Background,
    assert_channel_at_hq,
    create_databases,
    expected_rows,
    hq_count,
    make_topology,
    sell,
    upload_records,
    wait_until,
)

pytestmark = pytest.mark.integration

CHANNELS = ["f01", "f02", "f03"]
FENCED = "f01"


def _seller(topo, channel: str, seed: int, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        sell(topo, channel, 2, seed=seed * 1000 + n)
        n += 1
        time.sleep(0.05)


def _fence(topo, channel: str) -> None:
    """A second producer with the channel's upload transactional.id: the uploader's epoch is now stale."""
    k = topo.kafka
    twin = Producer(producer_config(client_config(k.bootstrap_servers),
                                    transactional_id=f"{k.topic_prefix}-upload-{channel}"))
    twin.init_transactions(30)
    twin.flush(5)


def _uploaded_more_than(topo, channel: str, n: int) -> Callable[[], bool]:
    return lambda: len(upload_records(topo, channel)) > n


def _recovered(uploader: ChannelUploader, n: int) -> Callable[[], bool]:
    return lambda: uploader.target.recoveries >= n


@pytest.mark.parametrize("ha", [False, True])
def test_a_fenced_channel_upload_recovers_in_process(ha: bool, tmp_path: Path, kafka: str) -> None:
    topo = make_topology(tmp_path, kafka, f"sqlite:///{tmp_path}/hq.db", CHANNELS)
    create_databases(topo)
    for i, c in enumerate(CHANNELS):
        sell(topo, c, 10, seed=i)
    upload = UploadConnector(topo, options=dataclasses.replace(FAST, ha=ha, lease_timeout=6.0))
    upload.setup()
    sink = UploadSink(topo, SinkOptions(poll_timeout=0.1, unknown_schema_wait=2.0))
    sink.setup()
    threads = [Background(upload.run, "upload"), Background(sink.run, "sink")]
    stop = threading.Event()
    sellers = [threading.Thread(target=_seller, args=(topo, c, 10 + i, stop)) for i, c in enumerate(CHANNELS)]
    fenced = next(u for u in upload.uploaders if u.id == FENCED)

    def check() -> None:
        for t in threads:
            if not t.thread.is_alive():
                t.join()

    try:
        for s in sellers:
            s.start()
        for n in (1, 2):  # fenced twice, mid-load
            wait_until(_uploaded_more_than(topo, FENCED, 40 * n), 60, f"{FENCED} to upload", check=check)
            _fence(topo, FENCED)
            wait_until(_recovered(fenced, n), 60, f"{FENCED} to recover", check=check)
        time.sleep(1.0)
        stop.set()
        for s in sellers:
            s.join()
        want = expected_rows(topo)
        wait_until(lambda: hq_count(topo) >= want, 90, "HQ to receive every row", check=check)
        time.sleep(0.5)
    finally:
        stop.set()
        upload.stop()
        sink.stop()
        for t in threads:
            t.join(60)
    assert hq_count(topo) == want
    assert all(u.error is None for u in upload.uploaders)
    assert fenced.target.recoveries >= 2  # its producer fenced: replaced, positions re-read
    assert all(u.target.recoveries == 0 for u in upload.uploaders if u is not fenced)
    for c in CHANNELS:
        assert_channel_at_hq(topo, c)
        keys = [(k["table"], k["counter"]) for k, _, _ in upload_records(topo, c)]
        assert len(keys) == len(set(keys)), f"{c}: a row was published twice"
