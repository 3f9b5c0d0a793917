"""Crash injection: six channels sell concurrently while ``cdx channel upload`` and
``cdx hq upload-sink`` (real CLI processes) are SIGKILLed at random moments. At the end HQ holds
every transaction exactly once: count and checksum per channel and table, every (table, counter)
once on each upload topic, and the upload sessions (written in the same HQ transactions) count
exactly the rows HQ holds, with no duplicate ever re-applied."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from cdx.connectors.upload import sessions as hist
from cdx.dialects import connect, get_dialect
from tests.upload.helpers import (
    Proc,
    assert_channel_at_hq,
    create_databases,
    expected_rows,
    fresh_pg,
    hq_count,
    make_topology,
    sell,
    stop_all,
    topology_path,
    upload_keys,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHANNELS = [f"k{i:02d}" for i in range(1, 7)]
WRITE_SECONDS = 10.0
"""At least; the kills go on (channels still selling) until each process was killed 3 times."""


def _writer(topo, channel: str, seed: int, stop: threading.Event, written: dict[str, int]) -> None:
    rng = random.Random(seed)
    n = 0
    while not stop.is_set():
        k = rng.randint(1, 4)
        sell(topo, channel, k, seed=seed * 1000 + n)
        n += k
        time.sleep(rng.uniform(0.02, 0.15))
    written[channel] = n


def test_sigkill_upload_and_sink_while_channels_sell(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    hq_dsn = fresh_pg(postgres_server, "crash")
    topo = make_topology(tmp_path, kafka, hq_dsn, CHANNELS)
    create_databases(topo)
    path = str(topology_path(topo))
    upload = Proc(["channel", "upload", "--topology", path, "--poll-interval", "0.05", "--gap-grace", "0.5"],
                  tmp_path / "upload.log").start()
    sink = Proc(["hq", "upload-sink", "--topology", path, "--instance-id", "crash-sink", "--batch-size", "500"],
                tmp_path / "sink.log").start()
    stop = threading.Event()
    written: dict[str, int] = {}
    writers = [threading.Thread(target=_writer, args=(topo, c, i + 1, stop, written), daemon=True)
               for i, c in enumerate(CHANNELS)]
    for w in writers:
        w.start()
    rng = random.Random(20261123)
    t_end = time.monotonic() + WRITE_SECONDS
    try:
        while time.monotonic() < t_end or upload.kills < 3 or sink.kills < 3:
            time.sleep(rng.uniform(1.0, 3.0))
            victim = rng.choice([upload, sink])
            victim.check()
            victim.kill()
            victim.start()
        stop.set()
        for w in writers:
            w.join(30)
        want = expected_rows(topo)
        wait_until(lambda: hq_count(topo) >= want, 120, f"HQ to hold {want} rows",
                   check=lambda: (upload.check(), sink.check()))
        time.sleep(1.0)  # anything extra would show up now
    finally:
        stop.set()
        codes = stop_all(upload, sink)
    assert codes == (0, 0), f"SIGTERM exit codes {codes}"
    assert upload.kills >= 3 and sink.kills >= 3
    assert sum(written.values()) > 300

    assert hq_count(topo) == want
    published = upload_keys(topo, CHANNELS)
    for c in CHANNELS:
        assert_channel_at_hq(topo, c)
        keys = [(k["table"], k["counter"]) for k in published[c]]
        assert len(keys) == len(set(keys)), f"{c}: a row was published twice"
    d = get_dialect("postgresql")
    conn = connect("postgresql", hq_dsn)
    totals = hist.summary(conn, d)
    conn.close()
    assert sum(s.rows_inserted for s in totals) == want
    assert sum(s.rows_duplicate for s in totals) == 0, "a batch was applied twice (offsets not atomic with rows)"
