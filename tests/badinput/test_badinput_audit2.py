"""Bad-input corpus, third audit: unknown ids named with the known ones, options checked before anything starts.

- ``cdx channel upload`` / ``offline-sync`` with an unknown ``--channel`` name the known channel ids;
- ``cdx channel upload --from-counter N --table T`` refuses a table that is no upload table of the channel
  on the topology file, before any database or Kafka is reached (it retried until the channel database opened);
- ``cdx channel migrate --scripts ''`` refuses the empty path (``Path("")`` is the current folder);
- signal handlers installed by a command run in-process are restored when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.badinput.helpers import assert_clean_error, base_topology, cli, run_cdx, snapshot, write


def _topology(tmp: Path) -> Path:
    return write(tmp / "topology.yaml", base_topology(tmp))


# -- unknown --channel ids name the known ones -----------------------------------------------------------
@pytest.mark.parametrize("command", ["upload", "offline-sync"])
def test_unknown_channel_names_the_known_ids(tmp_path: Path, command: str) -> None:
    """Before: ``upload`` named only the wrong id; ``offline-sync`` printed a Python list (``['nope']``)."""
    path = _topology(tmp_path)
    before = snapshot(tmp_path)
    text = assert_clean_error(cli("channel", command, "-c", "s1", "-c", "nope", "-t", path), "'nope'",
                              "are s1: fix --channel")
    assert "[" not in text and "'s1'" not in text, text
    assert snapshot(tmp_path) == before


def test_unknown_channel_through_the_console_script(tmp_path: Path) -> None:
    out = run_cdx("channel", "offline-sync", "-c", "nope", "-t", _topology(tmp_path), cwd=tmp_path)
    assert_clean_error(out, "channel 'nope'", "the channels with offline registers are s1")


# -- --from-counter --table checked on the topology first -------------------------------------------------
@pytest.mark.parametrize("table", ["a.b.c", "ax.PARENT", "NOSUCH", " "],
                         ids=["three parts", "download table", "unknown", "blank"])
def test_from_counter_table_that_is_no_upload_table(tmp_path: Path, table: str) -> None:
    """Before: accepted, then retried (Kafka unreachable, channel database missing) until the database
    opened; only then was the name checked. Kafka here is a closed port: the error comes first."""
    path = _topology(tmp_path)
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "upload", "-c", "s1", "--from-counter", "3", "--table", table, "-t", path),
                       "channel s1: --table", "is no upload table of the channel", "it uploads ax.SALES (subjob Sales)")
    assert snapshot(tmp_path) == before


def test_from_counter_table_through_the_console_script(tmp_path: Path) -> None:
    """The real process: one line, no Kafka warning before it (the check runs before Kafka is tried); a
    subjob id is a valid name, the unknown one is named alone."""
    out = run_cdx("channel", "upload", "-c", "s1", "--from-counter", "3", "--table", "Sales", "--table",
                  "nope", "-t", _topology(tmp_path), cwd=tmp_path)
    assert_clean_error(out, "--table 'nope' is no upload table")
    assert "'Sales'" not in out.stderr


# -- migrate --scripts '' ---------------------------------------------------------------------------------
def test_migrate_refuses_an_empty_scripts_path(tmp_path: Path) -> None:
    """Before: ``--scripts ''`` ran the .sql files of the current folder."""
    path = _topology(tmp_path)
    (tmp_path / "001_drop.sql").write_text("DROP TABLE ax.SALES;\n")
    before = snapshot(tmp_path)
    out = run_cdx("channel", "migrate", "--scripts", "", "-c", "s1", "-t", path, cwd=tmp_path)
    assert_clean_error(out, "--scripts is empty", "give the folder of the .sql scripts")
    assert snapshot(tmp_path) == before


def test_migrate_refuses_a_scripts_path_that_is_no_folder(tmp_path: Path) -> None:
    path = _topology(tmp_path)
    script = tmp_path / "001_add.sql"
    script.write_text("SELECT 1;\n")
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "migrate", "--scripts", script, "-c", "s1", "-t", path),
                       f"directory {script} does not exist or is not a directory", "fix --scripts")
    assert snapshot(tmp_path) == before


# -- signal handlers: restored after an in-process run; a role process still stops on SIGTERM and SIGINT ----
def test_an_in_process_run_leaves_the_signal_handlers_as_they_were(tmp_path: Path) -> None:
    """Before: ``on_stop_signals`` bound SIGTERM/SIGINT to the command's role for good; after the run they
    stopped a finished role instead of reaching the handlers the embedding program (here the test) had.
    The command (Kafka unreachable: it waits in its set-up) is stopped by SIGTERM sent from a thread."""
    path = _topology(tmp_path)
    got: list[int] = []

    def mine(signum: int, _frame: Any) -> None:
        got.append(signum)

    before = {s: signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGINT)}
    done = threading.Event()

    def interrupt() -> None:  # again until the command has installed its handlers and stops
        while not done.wait(0.3):
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=interrupt, daemon=True)
    try:
        sender.start()
        out = cli("channel", "upload", "-c", "s1", "-t", path)
        done.set()
        sender.join(10)
        assert out.exit_code == 0, out.stderr
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
        seen = len(got)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while len(got) == seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got[seen:] == [signal.SIGINT]
    finally:
        done.set()
        for s, h in before.items():
            signal.signal(s, h)


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_sink_process_stops_cleanly_on_a_stop_signal(tmp_path: Path, kafka: str, sig: int) -> None:
    """``cdx sink`` on SQLite, caught up with a few routed changes: the signal ends it with exit 0 (the
    stop callback runs on the signal watcher thread)."""
    from tests.sink.helpers import FakeRouter, sqlite_db, stored_offsets, workload
    from tests.sink.helpers import write_topology as sink_topology

    db = sqlite_db(tmp_path, "c1")
    path, topo = sink_topology(tmp_path, kafka, [db])
    router = FakeRouter(topo)
    workload(router, 50, seed=3, keys=20)
    router.flush()
    log = tmp_path / "sink.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", "sink", "--topology", str(path), "--channel",
                                 "c1"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ends = router.ends()
            deadline = time.monotonic() + 90
            while not all(stored_offsets(db, router.topic).get(p, 0) >= e for p, e in ends.items() if e):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the sink did not catch up"
                time.sleep(0.3)
        finally:
            proc.send_signal(sig)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    assert f"signal {int(sig)}: finishing the current unit of work" in text, text[-3000:]


@pytest.mark.integration
def test_a_router_process_stops_cleanly_on_sigint(tmp_path: Path, kafka: str) -> None:
    """``cdx route`` (its SIGTERM stop is covered by tests/routing): SIGINT after routing ends it with exit 0."""
    from tests.routing.helpers import HqWriter, Workload, expected, spawn_router, stop, wait_routed
    from tests.routing.helpers import write_topology as route_topology

    path, topo = route_topology(tmp_path, kafka)
    HqWriter(topo).write(Workload(5).changes(50))
    proc = spawn_router(path, tmp_path, engine="transactional")
    try:
        wait_routed(topo, expected(topo))
    finally:
        code = stop(proc, signal.SIGINT, timeout=60)
    text = (tmp_path / "router.log").read_text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
