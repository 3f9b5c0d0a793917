"""Replay on every hop, each command twice in a row, with the real roles (capture, router, sink, channel upload,
HQ upload sink): the channel's items and HQ's sales end exactly as they were before (count and checksum), the
re-sent records show up only as duplicates in the sessions (download and upload), nothing is inserted twice.

- ``cdx channel upload --channel s1 --from-counter 1`` (the insert-only HQ sink absorbs the re-sends);
- ``cdx hq upload-sink replay --channel s1 --from-offset 0``;
- ``cdx route replay --table dbo.INVENTTABLE --from-offset 0`` (sinks skip the re-sent changes by watermark);
- ``cdx capture resnapshot --table dbo.INVENTTABLE`` (the rows are published again and upserted unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from cdx.connectors.upload import sessions as hist
from cdx.dialects import connect, get_dialect
from cdx.topology import Topology
from tests.ops.helpers import HqWriter, cdx, channel_items, digest, hq_items, ops_topology, prepare, roles, start_roles
from tests.pipeline.helpers import wait_for
from tests.upload.helpers import assert_channel_at_hq, fresh_pg, sell

pytestmark = [pytest.mark.integration, pytest.mark.ops_long]


def _upload_totals(topo: Topology) -> tuple[int, int]:
    """(rows inserted, rows duplicate) over the HQ upload sessions of s1."""
    d = get_dialect(topo.hq.dialect.value)
    conn = connect(topo.hq.dialect.value, topo.hq.dsn)
    try:
        s = next((x for x in hist.summary(conn, d) if x.channel == "s1"), None)
        return (s.rows_inserted, s.rows_duplicate) if s else (0, 0)
    finally:
        conn.close()


def _hq_offsets(topo: Topology) -> dict[str, int]:
    d = get_dialect(topo.hq.dialect.value)
    conn = connect(topo.hq.dialect.value, topo.hq.dsn)
    try:
        with d.transaction(conn):
            return {k: int(v) for k, v in d.read_state(conn, f"{topo.kafka.topic_prefix}-hq-upload").items()}
    finally:
        conn.close()


def _router_offsets(topo: Topology) -> dict[int, int]:
    topic = topo.hq_table_topic(topo.subjob("InventTable"))  # type: ignore[arg-type]
    group = f"{topo.kafka.topic_prefix}-router"
    admin = AdminClient(topo.kafka.client_config())
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])]
    got = admin.list_consumer_group_offsets(req)[group].result(30)
    return {tp.partition: tp.offset for tp in got.topic_partitions}


def _download_totals(topo: Topology) -> tuple[int, int]:
    """(rows upserted, duplicates) over s1's download sessions."""
    info = next(i for i in topo.databases() if i.owner_id == "s1")
    conn = connect(info.database.dialect.value, info.database.dsn)
    try:
        row = conn.execute('SELECT SUM("rows_upserted"), SUM("duplicates") FROM "cdx_download_sessions"').fetchone()
        return int(row[0] or 0), int(row[1] or 0)
    finally:
        conn.close()


def _reached(current: Callable[[], dict[Any, int]], before: dict[Any, int]) -> Callable[[], str | None]:
    return lambda: None if all(current().get(k, -1) >= v for k, v in before.items()) else f"{current()} < {before}"


def test_each_replay_twice_equals_never_replaying(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    topo = ops_topology(tmp_path, kafka, fresh_pg(postgres_server, "hops"))
    prepare(topo)
    group = roles(tmp_path, topo)
    HqWriter(topo).write(25)
    sell(topo, "s1", 12, seed=5)
    try:
        cdx(group, "hq", "enable-tracking")
        start_roles(group, "capture", "router", "sink", "upload", "hq-sink")
        wait_for(lambda: None if channel_items(topo) and channel_items(topo) == hq_items(topo) else "items",
                 group, 180, "items in the channel")

        def sales_in() -> str | None:
            try:
                return None if assert_channel_at_hq(topo, "s1") else "no sales"
            except AssertionError as e:
                return str(e)[:200]

        wait_for(sales_in, group, 180, "sales at HQ")
        items, sales = digest(channel_items(topo)), assert_channel_at_hq(topo, "s1")
        inserted, _ = _upload_totals(topo)
        rows = sum(n for n, _ in sales.values())

        for _ in range(2):  # channel upload --from-counter, twice
            _, dups = _upload_totals(topo)
            group.stop("upload")
            group.start("upload", ["channel", "upload", "--channel", "s1", "--from-counter", "1",
                                   "--poll-interval", "0.1"])
            wait_for(lambda d=dups: None if _upload_totals(topo)[1] >= d + rows else "re-sends not absorbed yet",
                     group, 120, "re-sent rows counted as duplicates")
            assert _upload_totals(topo)[0] == inserted and assert_channel_at_hq(topo, "s1") == sales

        for _ in range(2):  # hq upload-sink replay, twice
            before, (_, dups) = _hq_offsets(topo), _upload_totals(topo)
            group.stop("hq-sink")
            cdx(group, "hq", "upload-sink", "replay", "--channel", "s1", "--from-offset", "0", "--wait", "20")
            assert all(v == 0 for k, v in _hq_offsets(topo).items() if "upload" in k and k in before)
            start_roles(group, "hq-sink")
            wait_for(_reached(lambda: _hq_offsets(topo), before), group, 120, "the HQ sink back where it was")
            assert _upload_totals(topo)[1] >= dups + rows
            assert _upload_totals(topo)[0] == inserted and assert_channel_at_hq(topo, "s1") == sales

        for _ in range(2):  # route replay, twice
            before, (upserted, dups) = _router_offsets(topo), _download_totals(topo)
            group.stop("router")
            cdx(group, "route", "replay", "--table", "dbo.INVENTTABLE", "--from-offset", "0", "--wait", "20")
            assert all(v == 0 for v in _router_offsets(topo).values() if v >= 0)
            start_roles(group, "router")
            wait_for(_reached(lambda: _router_offsets(topo), before), group, 120, "the router back where it was")
            wait_for(lambda d=dups: None if _download_totals(topo)[1] >= d + items[0] else "re-sends not seen",
                     group, 120, "re-routed changes skipped as duplicates")
            assert _download_totals(topo)[0] == upserted  # nothing re-applied
            assert digest(channel_items(topo)) == items

        for _ in range(2):  # capture resnapshot, twice
            upserted, _ = _download_totals(topo)
            out = cdx(group, "capture", "resnapshot", "--table", "dbo.INVENTTABLE").stdout
            assert "the capture took it" in out, out
            wait_for(lambda u=upserted: None if _download_totals(topo)[0] >= u + items[0] else "not re-published",
                     group, 120, "the snapshot applied again")
            assert digest(channel_items(topo)) == items and channel_items(topo) == hq_items(topo)
        assert assert_channel_at_hq(topo, "s1") == sales and _upload_totals(topo)[0] == inserted
    finally:
        group.stop_all()
