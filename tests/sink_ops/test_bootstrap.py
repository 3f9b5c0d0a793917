"""``cdx channel bootstrap``: a channel (and an offline register) added later receives the full
current state of its compacted group topic, with a progress bar on a terminal, and the command
exits once caught up; it refuses a database whose sink is running."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cdx.cli import sink_cmd
from cdx.kafka.admin import COMPACTED, TopicSpec, ensure_topics
from cdx.kafka.config import client_config
from cdx.topics import group_topic
from tests.sink.helpers import (
    FakeRouter,
    assert_tables_equal,
    expected_state,
    pg_db,
    sqlite_db,
    wait_until,
    workload,
    write_topology,
)
from tests.sink_ops.helpers import by_db, caught_up, cli, host_state, sessions_of, status_json

pytestmark = pytest.mark.integration


def test_bootstrap_new_channel_and_register(tmp_path: Path, kafka: str, postgres_server: str, run_host,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    c1 = sqlite_db(tmp_path, "c1", recid=1)
    _, first = write_topology(tmp_path, kafka, [c1])
    prefix = first.kafka.topic_prefix
    ensure_topics(client_config(kafka), [TopicSpec(group_topic(prefix, "g1"), 3, 1, COMPACTED)])
    router = FakeRouter(first)
    workload(router, 3000, seed=8, keys=250, resend_every=400)
    router.flush()
    host = run_host(first, ["c1"])
    wait_until(lambda: caught_up(host, router), 60, "c1", lambda: host_state(host))

    # later: a new channel with an offline register joins the group
    c2 = pg_db(postgres_server, "c2", recid=2)
    c2.registers.append(sqlite_db(tmp_path, "c2r1"))
    path, topo = write_topology(tmp_path, kafka, [c1, c2], prefix=prefix)
    res = cli("channel", "bootstrap", "--topology", path, "--channel", "c1")
    assert res.exit_code == 1 and "the sink of c1 is running" in res.output, res.output

    screen = io.StringIO()
    monkeypatch.setattr(sink_cmd, "console", Console(file=screen, force_terminal=True, width=120))
    res = cli("channel", "bootstrap", "--topology", path, "--channel", "c2", "--channel", "c2r1", "--timeout", "60")
    assert res.exit_code == 0, res.output + screen.getvalue()
    shown = screen.getvalue()
    assert "bootstrap c2" in shown and "bootstrap c2r1" in shown and "caught up" in shown
    total = sum(router.ends().values())
    assert f"{total}/{total}" in shown
    assert_tables_equal(c2, expected_state(router.sent, recid=2))
    assert_tables_equal(c2.registers[0], expected_state(router.sent, recid=2))
    assert sum(s.records for s in sessions_of(c2)) == total
    st = by_db(status_json(path, "--no-uploads"))
    assert st["c2"]["lag_records"] == 0 and st["c2r1"]["lag_records"] == 0
    assert st["c2"]["sink_running"] is False  # the one-shot sink left its group

    # the channel keeps up afterwards with its regular sink
    workload(router, 300, seed=9, keys=250)
    router.flush()
    host2 = run_host(topo, ["c2"])
    wait_until(lambda: caught_up(host2, router), 60, "c2 incremental", lambda: host_state(host2))
    assert_tables_equal(c2, expected_state(router.sent, recid=2))
