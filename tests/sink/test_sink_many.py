"""50 SQLite channel databases hosted by one ``cdx sink`` process: all end equal to the expected
rows; the process's resident memory is reported (and bounded)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sink.helpers import FakeRouter, assert_tables_equal, expected_state, sqlite_db, stored_offsets, workload
from tests.sink.helpers import write_topology as make_topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHANNELS = 50


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_fifty_channels_in_one_process(tmp_path: Path, kafka: str, record_property) -> None:
    dbs = [sqlite_db(tmp_path, f"store{i:02d}", recid=1 + i % 2) for i in range(CHANNELS)]
    path, topo = make_topology(tmp_path, kafka, dbs)
    router = FakeRouter(topo)
    workload(router, 3000, seed=9, keys=400, resend_every=300)
    router.flush()
    log = tmp_path / "sink.log"
    started = time.monotonic()
    out = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "--topology", str(path)],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ends = router.ends()
        pending = list(dbs)
        deadline = time.monotonic() + 90
        while pending:
            pending = [d for d in pending
                       if not all(stored_offsets(d, router.topic).get(p, 0) >= e for p, e in ends.items() if e)]
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{len(pending)} channels behind"
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        status = _status(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        out.close()
    rss_mb = int(status["VmRSS"].split()[0]) / 1024
    peak_mb = int(status["VmHWM"].split()[0]) / 1024
    record_property("rss_mb", rss_mb)
    print(f"\n{CHANNELS} channels: {len(router.sent)} changes each applied in {elapsed:.1f}s (incl. start-up);"
          f" RSS {rss_mb:.0f} MiB, peak {peak_mb:.0f} MiB, threads {status['Threads']}")
    assert rss_mb < 1024
    for d in dbs:
        assert_tables_equal(d, expected_state(router.sent, recid=d.recid))
