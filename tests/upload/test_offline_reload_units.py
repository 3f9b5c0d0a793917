"""``OfflineSync.reload`` restarts a channel's register sync only when its registers or synced subjobs
changed: an upload subjob with ``offline: false`` (never synced from registers) is not a change."""

from __future__ import annotations

from pathlib import Path

from cdx.connectors.upload.offline import OfflineSync
from tests.ops.helpers import ops_topology


def test_an_unchanged_revision_keeps_the_running_register_syncs(tmp_path: Path) -> None:
    topo = ops_topology(tmp_path, "127.0.0.1:9", f"sqlite:///{tmp_path}/hq.db", registers=["r1"],
                        lines_offline=False)
    sync = OfflineSync(topo)
    sync.workers = [sync.worker(topo, c) for c in sync.channels]
    assert [w.channel.id for w in sync.workers] == ["s1"]
    before = list(sync.workers)
    sync.reload(topo)  # the same revision again: nothing to stop, nothing to start
    assert sync.workers == before and not sync.threads
