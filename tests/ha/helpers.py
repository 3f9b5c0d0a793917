"""Helpers of the active/standby tests: real ``cdx capture --ha`` / ``cdx channel upload --ha``
processes, the lease as the group coordinator reports it, and the takeover time measured as the
time from the active's death to the first position the new active committed (read_committed)."""

from __future__ import annotations

import json
import random
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cdx.dialects import connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.lease import LeaseState, describe_leases, lease_group
from cdx.kafka.reading import read_to_end
from cdx.topology import Topology
from tests.upload.helpers import Proc

LEASE_TIMEOUT = "6"
"""Seconds (Kafka's minimum session timeout): the shortest takeover bound, so the tests stay short."""


def member(proc: Proc) -> str:
    assert proc.proc is not None
    return f"{socket.gethostname()}:{proc.proc.pid}"


def lease_state(topo: Topology, role: str, name: str) -> LeaseState:
    k = topo.kafka
    group = lease_group(k.topic_prefix, role, name)
    state = describe_leases(client_config(k.bootstrap_servers), [group]).get(group)
    return state if state is not None else LeaseState(group, None, ())


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             check: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if check is not None:
            check()
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)


def wait_roles(topo: Topology, role: str, name: str, active: Proc, standby: Proc | None, timeout: float = 60) -> None:
    """Until the coordinator shows ``active`` holding the lease and ``standby`` waiting."""
    def settled() -> bool:
        state = lease_state(topo, role, name)
        return state.active == member(active) and (standby is None or member(standby) in state.standby)

    wait_for(settled, timeout, f"{member(active)} active" + (f", {member(standby)} standby" if standby else ""),
             check=lambda: (active.check(), standby.check() if standby is not None else None))


def settle(topo: Topology, role: str, name: str, procs: list[Proc], timeout: float = 60) -> list[Proc]:
    """Wait until one of ``procs`` (started together) holds the lease and the other waits; returns
    them as ``[active, standby]``."""
    def one_each() -> bool:
        state = lease_state(topo, role, name)
        return state.active in {member(p) for p in procs} and len(state.standby) == len(procs) - 1

    wait_for(one_each, timeout, f"one active {role} and a standby", check=lambda: [p.check() for p in procs])
    active = lease_state(topo, role, name).active
    return sorted(procs, key=lambda p: member(p) != active)


def newest_position_ms(topo: Topology, topic: str, key_prefix: str) -> int:
    """The newest ``ts_ms`` among the committed positions of ``topic`` whose key starts with ``key_prefix``."""
    newest = 0
    for msg in read_to_end(client_config(topo.kafka.bootstrap_servers), topic):
        if (msg.key() or b"").decode().startswith(key_prefix) and msg.value():
            newest = max(newest, int(json.loads(msg.value() or b"{}").get("ts_ms", 0)))
    return newest


def takeover_seconds(topo: Topology, topic: str, key_prefix: str, killed_at: float, survivor: Proc,
                     timeout: float = 90) -> float:
    """Seconds from ``killed_at`` (``time.time()``) until a position committed after it shows up:
    the new active is working (the writers keep producing changes, so it has something to commit)."""
    wait_for(lambda: newest_position_ms(topo, topic, key_prefix) >= killed_at * 1000, timeout,
             "the standby to commit", check=survivor.check)
    return time.time() - killed_at


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.1f}s, max {max(times):.1f}s over {len(times)} takeovers"


class HqWriter:
    """Inserts, updates and deletes HQ ``dbo.ITEMS`` rows in small transactions until stopped."""

    def __init__(self, dialect: str, dsn: str, seed: int) -> None:
        self.dialect, self.dsn = dialect, dsn
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.written = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HqWriter:
        self.thread.start()
        return self

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(60)
        if self.error is not None:
            raise self.error
        return self.written

    def _run(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self.error = exc

    def _write(self) -> None:
        d = get_dialect(self.dialect)
        conn = connect(self.dialect, self.dsn)
        items = d.qualified("dbo", "ITEMS")
        ph = "?" if self.dialect == "sqlite" else "%s"
        live: list[int] = []
        next_id = 0
        while not self.stop.is_set():
            with d.transaction(conn):
                cur = conn.cursor()
                for _ in range(20):
                    r = self.rng.random()
                    if r < 0.5 or len(live) < 50:
                        cur.execute(f"INSERT INTO {items} VALUES ('usrt', {ph}, {ph}, {ph}, {ph})",
                                    (f"I{next_id:06d}", f"item {next_id}", f"{self.rng.uniform(1, 99):.2f}", 0))
                        live.append(next_id)
                        next_id += 1
                    elif r < 0.9:
                        i = self.rng.choice(live)
                        cur.execute(f'UPDATE {items} SET "QTY" = "QTY" + 1 WHERE "ITEMID" = {ph}', (f"I{i:06d}",))
                    else:
                        i = live.pop(self.rng.randrange(len(live)))
                        cur.execute(f'DELETE FROM {items} WHERE "ITEMID" = {ph}', (f"I{i:06d}",))
                    self.written += 1
            time.sleep(0.02)
        conn.close()


def capture_proc(path: Path, log: Path) -> Proc:
    return Proc(["capture", "--topology", str(path), "--poll-interval", "0.05", "--ha", "--lease-timeout",
                 LEASE_TIMEOUT], log)


def upload_proc(path: Path, log: Path) -> Proc:
    return Proc(["channel", "upload", "--topology", str(path), "--poll-interval", "0.05", "--gap-grace", "0.5",
                 "--ha", "--lease-timeout", LEASE_TIMEOUT], log)


def assert_capture_exactly_once(topo: Topology, dialect: str, dsn: str) -> int:
    """Every change of ``dbo.ITEMS`` is on its topic once (read_committed): no (key, version) twice,
    each key's versions ascending in offset order, and the topic's last state equal to HQ's table.
    Returns the number of change records."""
    from tests.capture.helpers import last_state, read_table

    records = read_table(topo, "ITEMS")
    seen = [(k["ITEMID"], env["source"]["change_version"]) for k, env in records if env is not None]
    assert len(seen) == len(set(seen)), "a change was published twice"
    last: dict[str, int] = {}
    for item, version in seen:
        assert version > last.get(item, -1), f"{item}: version {version} after {last[item]} (replayed)"
        last[item] = version
    d = get_dialect(dialect)
    conn = connect(dialect, dsn)
    rows = conn.execute(f'SELECT "ITEMID", "QTY" FROM {d.qualified("dbo", "ITEMS")}').fetchall()
    conn.close()
    expected = {r[0]: int(r[1]) for r in rows}
    actual = {v["ITEMID"]: v["QTY"] for v in last_state(records).values()}
    missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    differ = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
    assert not (missing or extra or differ), f"{len(missing)} missing, {len(extra)} extra, {len(differ)} differ"
    return len(seen)


def wait_capture_caught_up(topo: Topology, dialect: str, dsn: str, active: Proc, timeout: float = 120) -> None:
    from cdx.connectors.capture.positions import load_positions
    from cdx.connectors.capture.tracking import open_tracker
    from cdx.topics import positions_topic

    tracker = open_tracker(dialect, dsn)
    target = tracker.current_version()
    tracker.conn.close()
    cfg = client_config(topo.kafka.bootstrap_servers)

    def reached() -> bool:
        pos = load_positions(cfg, positions_topic(topo.kafka.topic_prefix), "hq").get("dbo.ITEMS")
        return pos is not None and pos.snapshot is None and pos.version >= target

    wait_for(reached, timeout, f"capture to reach version {target}", check=active.check)


class Seller:
    """Writes sales into channel databases (a few transactions at a time) until stopped."""

    def __init__(self, topo: Topology, channels: list[str], seed: int) -> None:
        self.topo, self.channels = topo, channels
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.sold = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Seller:
        self.thread.start()
        return self

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(60)
        if self.error is not None:
            raise self.error
        return self.sold

    def _run(self) -> None:
        from tests.upload.helpers import sell

        try:
            while not self.stop.is_set():
                n = self.rng.randint(1, 3)
                sell(self.topo, self.rng.choice(self.channels), n, seed=self.rng.randrange(1 << 30))
                self.sold += n
                time.sleep(self.rng.uniform(0.02, 0.1))
        except BaseException as exc:
            self.error = exc


def assert_uploaded_exactly_once(topo: Topology, channels: list[str], active: Proc, timeout: float = 120) -> int:
    """Every channel's upload topic ends with each of its rows once (read_committed): the count equals
    the channel database's rows and no (table, counter) repeats. Returns the rows checked."""
    from tests.upload.helpers import channel_rows, upload_records

    total = 0
    for c in channels:
        rows = channel_rows(topo, c)
        want = len(rows["header"]) + len(rows["lines"])
        wait_for(lambda c=c, want=want: len(upload_records(topo, c)) >= want, timeout,  # type: ignore[misc]
                 f"{want} rows of {c} on its upload topic", check=active.check)
        keys = [(k["table"], k["counter"]) for k, _, _ in upload_records(topo, c)]
        assert len(keys) == len(set(keys)), f"{c}: a row was published twice"
        assert len(keys) == want, f"{c}: {len(keys)} records for {want} rows"
        total += want
    return total
