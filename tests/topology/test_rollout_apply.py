"""``cdx topology apply`` and the control topics on a real broker: revisions are published once and in
order, a role follows them (and refuses one that is invalid for it, saying why), bad input applies
nothing, and ``--dry-run`` changes nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from cdx.dialects import ColumnInfo, LogicalType, connect, get_dialect
from cdx.errors import ConfigError
from cdx.kafka.admin import partitions_of
from cdx.kafka.config import client_config
from cdx.kafka.control import (
    RevisionWatcher,
    RoleReporter,
    ensure_control_topics,
    latest_revision,
    publish_revision,
    read_role_reports,
)
from cdx.topics import topology_roles_topic, topology_topic
from cdx.topology import Topology, load_topology
from cdx.topology.live import LiveTopology
from cdx.topology.rollout import rollout
from tests.badinput.helpers import assert_clean_error, cli

pytestmark = pytest.mark.integration

S = LogicalType.STRING
ITEMS = [ColumnInfo("DATAAREAID", S, nullable=False, length=4), ColumnInfo("ITEMID", S, nullable=False, length=20),
         ColumnInfo("NAME", S, length=60)]

TOPOLOGY = """kafka: {{bootstrap_servers: "{kafka}", topic_prefix: {prefix}, default_partitions: {partitions}}}
hq: {{name: hq, dialect: sqlite, dsn: "sqlite:///{tmp}/hq.db"}}
jobs: [{{id: J1, direction: download}}]
subjobs:
  - {{id: Items, hq_table: dbo.ITEMS, fields: [ITEMID, NAME], scheduled_by: [J1]}}
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
{channels}
distribution_schedules:
  - {{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}
"""


def _write(path: Path, kafka: str, prefix: str, channels: list[str], partitions: int = 2) -> Path:
    rows = "\n".join(f'      - {{id: {c}, database: {{dialect: sqlite, dsn: "sqlite:///{path.parent}/{c}.db"}}}}'
                     for c in channels)
    path.write_text(TOPOLOGY.format(kafka=kafka, prefix=prefix, partitions=partitions, tmp=path.parent,
                                    channels=rows))
    return path


def _hq(tmp: Path) -> None:
    d = get_dialect("sqlite")
    conn = connect("sqlite", f"sqlite:///{tmp}/hq.db")
    with d.transaction(conn):
        d.ensure_schema(conn, "dbo")
        d.create_table(conn, "dbo", "ITEMS", ITEMS, ["DATAAREAID", "ITEMID"])
    conn.close()


def test_revisions_are_published_once_in_order_and_followed(kafka: str) -> None:
    config = client_config(kafka)
    prefix = f"ctl{uuid.uuid4().hex[:8]}"
    topic, roles_topic = topology_topic(prefix), topology_roles_topic(prefix)
    assert latest_revision(config, topic, "hq") is None
    ensure_control_topics(config, (topic, roles_topic), 1)
    r1, new1 = publish_revision(config, topic, "hq", "text: 1\n", "a.yaml")
    again, new_again = publish_revision(config, topic, "hq", "text: 1\n", "a.yaml")
    assert (r1.number, new1, again, new_again) == (1, True, r1, False)  # the same text: nothing new
    watcher = RevisionWatcher(config, topic, "hq", recheck=0.1)
    publish_revision(config, topic, "other", "text: x\n")  # another topology's key: not ours
    r2, _ = publish_revision(config, topic, "hq", "text: 2\n", "b.yaml")
    seen = None
    deadline = time.monotonic() + 30
    while seen is None and time.monotonic() < deadline:
        seen = watcher.poll()
        time.sleep(0.1)
    assert seen == r2 and r2.number == 2 and r2.text == "text: 2\n"
    assert watcher.poll() is None  # returned once
    watcher.close()

    reporter = RoleReporter(config, roles_topic, "hq", "sink")
    reporter.report("store-1", r2.label, r2.sha256)
    reporter.report("store-2", r1.label, r1.sha256, refused="r2", detail="store-2 not in r2")
    reporter._producer.flush(10)
    reports = {r.instance: r for r in read_role_reports(config, roles_topic, "hq")}
    assert reports["store-1"].revision == "r2" and reports["store-1"].state == "running"
    assert reports["store-2"].state == "refused" and reports["store-2"].detail == "store-2 not in r2"
    reporter.close()  # a clean stop leaves tombstones
    assert read_role_reports(config, roles_topic, "hq") == []


def test_a_role_takes_a_published_revision_or_refuses_it_with_the_reason(tmp_path: Path, kafka: str) -> None:
    _hq(tmp_path)
    prefix = f"liv{uuid.uuid4().hex[:8]}"
    path = _write(tmp_path / "topology.yaml", kafka, prefix, ["c1"])
    live = LiveTopology.start(path, "sink", ["c1"], interval=0.0)
    assert live.label.startswith("file ")
    taken: list[Topology] = []
    assert not live.offer(taken.append)  # nothing new
    path2 = _write(tmp_path / "v2.yaml", kafka, prefix, ["c1", "c2"])
    out = cli("topology", "apply", path2)
    assert out.exit_code == 0, out.stderr + out.stdout
    deadline = time.monotonic() + 30
    while not taken and time.monotonic() < deadline:
        live.offer(taken.append)
        time.sleep(0.2)
    assert [c.channel.id for c in taken[0].channels()] == ["c1", "c2"] and live.label == "r1"

    def refuse(_topology: Topology) -> None:
        raise ConfigError("c1 not in this revision, and this sink process serves it (--channel)")

    _write(tmp_path / "v3.yaml", kafka, prefix, ["c2"])
    assert cli("topology", "apply", tmp_path / "v3.yaml").exit_code == 0
    deadline = time.monotonic() + 30
    while live._refused is None and time.monotonic() < deadline:
        live.offer(refuse)
        time.sleep(0.2)
    assert live.label == "r1"  # kept the revision it runs
    live.reporter._producer.flush(10)
    state = rollout(live.current)
    (mine,) = [r for r in state.reports if r.instance == "c1"]
    assert (mine.revision, mine.state, mine.refused) == ("r1", "refused", "r2") and "--channel" in mine.detail
    assert not state.complete and "0 of 1" in state.summary() and "1 refused" in state.summary()
    live.close()


def test_apply_runs_its_steps_idempotently_and_dry_run_changes_nothing(tmp_path: Path, kafka: str) -> None:
    _hq(tmp_path)
    prefix = f"app{uuid.uuid4().hex[:8]}"
    config = client_config(kafka)
    v1 = _write(tmp_path / "v1.yaml", kafka, prefix, ["c1"])
    dry = cli("topology", "apply", v1, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "HQ change tracking on dbo.ITEMS" in dry.stdout and "publish" in dry.stdout
    assert "dry run: nothing applied" in dry.stdout
    assert partitions_of(config, topology_topic(prefix)) == []
    assert partitions_of(config, f"{prefix}.group.g1") == []

    out = cli("topology", "apply", v1)
    assert out.exit_code == 0, out.stderr + out.stdout
    assert "published r1" in out.stdout
    assert len(partitions_of(config, f"{prefix}.group.g1")) == 2
    from cdx.connectors.capture.tracking import open_tracker

    tracker = open_tracker("sqlite", f"sqlite:///{tmp_path}/hq.db")
    assert tracker.min_valid_version("dbo.ITEMS") >= 0  # tracked
    tracker.conn.close()

    again = cli("topology", "apply", v1)
    assert again.exit_code == 0 and "r1 already published" in again.stdout, again.stdout
    v2 = _write(tmp_path / "v2.yaml", kafka, prefix, ["c1", "c2"])
    second = cli("topology", "apply", v2)
    assert second.exit_code == 0, second.stderr
    assert "r1 in force" in second.stdout and "c2" in second.stdout and "published r2" in second.stdout
    assert latest_revision(config, topology_topic(prefix), "hq").number == 2  # type: ignore[union-attr]


def test_bad_input_applies_nothing(tmp_path: Path, kafka: str) -> None:
    _hq(tmp_path)
    prefix = f"bad{uuid.uuid4().hex[:8]}"
    config = client_config(kafka)
    broken = tmp_path / "broken.yaml"
    broken.write_text(_write(tmp_path / "ok.yaml", kafka, prefix, ["c1"]).read_text().replace("fields: [", "fields: ["
                                                                                                  "1, "))
    assert_clean_error(cli("topology", "apply", broken), "broken.yaml", max_lines=5)
    assert partitions_of(config, topology_topic(prefix)) == []
    assert cli("topology", "apply", tmp_path / "ok.yaml").exit_code == 0
    fewer = _write(tmp_path / "fewer.yaml", kafka, prefix, ["c1", "c2"], partitions=1)
    out = cli("topology", "apply", fewer)
    text = assert_clean_error(out, "nothing was applied")
    assert "partitions" in text
    assert latest_revision(config, topology_topic(prefix), "hq").number == 1  # type: ignore[union-attr]


def test_a_process_serving_a_removed_channel_refuses_the_revision(tmp_path: Path) -> None:
    from cdx.connectors.sink.host import SinkHost
    from cdx.connectors.upload.uploader import UploadConnector
    from tests.upload.helpers import make_topology

    old = load_topology(_write(tmp_path / "v1.yaml", "127.0.0.1:1", "p", ["c1", "c2"]))
    new = load_topology(_write(tmp_path / "v2.yaml", "127.0.0.1:1", "p", ["c2"]))
    host = SinkHost(old, ["c1"])
    with pytest.raises(ConfigError, match="c1 not in this revision"):
        host.reload(new)
    assert [s.owner_id for s in host.specs] == ["c1"] and host.topology is old  # unchanged
    up_old = make_topology(tmp_path, "127.0.0.1:1", f"sqlite:///{tmp_path}/hq.db", ["c1", "c2"], prefix="p")
    up_new = make_topology(tmp_path, "127.0.0.1:1", f"sqlite:///{tmp_path}/hq.db", ["c2"], prefix="p")
    connector = UploadConnector(up_old, ["c1"])
    with pytest.raises(ConfigError, match="'c1' is not in the topology"):
        connector.reload(up_new)
    assert [c.id for c in connector.channels] == ["c1"]
