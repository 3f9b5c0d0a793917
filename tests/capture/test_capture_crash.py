"""Crash injection: the capture process is SIGKILLed at random moments during 25,000 changes, each time
after it published something; every change still lands on the topics exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from cdx.connectors.capture.positions import load_positions
from cdx.connectors.capture.tracking import open_tracker
from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import high_watermarks
from cdx.topics import positions_topic, table_topic
from tests.capture.helpers import last_state, make_hq, read_table, write_topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHANGES = 25_000
BATCH = 1000


def _writer(dialect: str, dsn: str, seed: int, done: threading.Event) -> None:
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    items = d.qualified("dbo", "ITEMS")
    ph = "?" if dialect == "sqlite" else "%s"
    rng = random.Random(seed)
    live: list[int] = []
    next_id = 0
    written = 0
    while written < CHANGES:
        # PostgreSQL: pipeline mode sends the batch's statements without a round trip each (same statements,
        # same order, same transaction); the writer no longer outlasts the kills on a loaded machine
        with d.transaction(conn), (conn.pipeline() if dialect == "postgresql" else nullcontext()):
            cur = conn.cursor()
            for _ in range(BATCH):
                r = rng.random()
                if r < 0.4 or len(live) < 100:
                    cur.execute(f"INSERT INTO {items} VALUES ('usrt', {ph}, {ph}, {ph}, {ph})",
                                (f"I{next_id:06d}", f"item {next_id}", f"{rng.uniform(1, 99):.2f}", next_id))
                    live.append(next_id)
                    next_id += 1
                elif r < 0.85:
                    i = rng.choice(live)
                    cur.execute(f'UPDATE {items} SET "QTY" = "QTY" + 1, "PRICE" = {ph} WHERE "ITEMID" = {ph}',
                                (f"{rng.uniform(1, 99):.2f}", f"I{i:06d}"))
                else:
                    i = live.pop(rng.randrange(len(live)))
                    cur.execute(f'DELETE FROM {items} WHERE "ITEMID" = {ph}', (f"I{i:06d}",))
                written += 1
        time.sleep(0.01)
    conn.close()
    done.set()


def _spawn(path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "capture", "--topology", str(path),
                             "--poll-interval", "0.05"], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _published(topo) -> int:
    """Records on the ITEMS topic (0 before capture created it)."""
    k = topo.kafka
    try:
        return sum(high_watermarks(client_config(k.bootstrap_servers),
                                   table_topic(k.topic_prefix, topo.hq.name, "dbo", "ITEMS")).values())
    except KafkaException:
        return 0


def _wait_publishing(topo, before: int, done: threading.Event) -> None:
    """Until this capture run published something (while the writer writes; at most 60 s)."""
    deadline = time.monotonic() + 60
    while _published(topo) <= before and not done.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_capture_survives_sigkill(dialect: str, tmp_path: Path, kafka: str, request) -> None:
    if dialect == "sqlite":
        dsn = f"sqlite:///{tmp_path}/hq.db"
    else:
        from cdx.infra.postgres import launcher

        dsn = launcher.create_database(request.getfixturevalue("postgres_server"), f"capcrash_{os.getpid()}")
    make_hq(dialect, dsn)
    path, topo = write_topology(tmp_path, kafka, dialect, dsn)
    tracker = open_tracker(dialect, dsn)
    tracker.enable(["dbo.ITEMS", "dbo.NOTES"])

    log = tmp_path / "capture.log"
    before = _published(topo)
    proc = _spawn(path, log)
    done = threading.Event()
    writer = threading.Thread(target=_writer, args=(dialect, dsn, 7, done), daemon=True)
    writer.start()
    rng = random.Random(11)
    kills = 0
    try:
        while kills < 5 or (not done.is_set() and kills < 8):
            _wait_publishing(topo, before, done)  # every kill falls mid-stream, none before the run's first batch
            time.sleep(rng.uniform(0.2, 1.5))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            before = _published(topo)
            proc = _spawn(path, log)
        writer.join()
        assert done.is_set(), "the writer failed (see the thread's exception above)"
        target = tracker.current_version()
        cfg = client_config(kafka)
        deadline = time.monotonic() + 180
        while True:
            pos = load_positions(cfg, positions_topic(topo.kafka.topic_prefix), "hq").get("dbo.ITEMS")
            if pos is not None and pos.version >= target:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"capture did not catch up: {pos} < {target}"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert kills >= 5

    records = read_table(topo, "ITEMS")
    seen = [(k["ITEMID"], env["source"]["change_version"]) for k, env in records if env is not None]
    assert len(seen) == len(set(seen)), "a change was published twice"
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    rows = conn.execute(f'SELECT "ITEMID", "QTY", "PRICE" FROM {d.qualified("dbo", "ITEMS")}').fetchall()
    conn.close()
    tracker.conn.close()
    expected = {r[0]: (int(r[1]), f"{float(r[2]):.2f}") for r in rows}
    actual = {v["ITEMID"]: (v["QTY"], f"{float(v['PRICE']):.2f}") for v in last_state(records).values()}
    assert actual == expected
