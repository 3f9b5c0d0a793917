"""The body of ``cdx demo`` (``cdx.cli.demo`` imports it only when the demo runs, so that no other ``cdx``
command pays for importing the demo, the dialects and the verifier at start-up).

Phases: set up (Kafka, fresh databases, seeded HQ, tracking) -> start every role as its own
process (capture, router, sinks, upload, offline sync, HQ upload sink) -> initial full sync of
every channel and register -> live traffic (HQ changes, POS sales, one register offline for the
first half) -> settle -> verify every database against HQ and every sale at HQ exactly once ->
report. Exit code 1 when verification fails.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from contextlib import closing, nullcontext
from pathlib import Path

from rich.live import Live
from rich.table import Table

from cdx.cli.app import console
from cdx.demo.environment import DemoEnv
from cdx.demo.latency import LatencyProbe
from cdx.demo.monitor import render, snapshot
from cdx.demo.pos import catalog, terminal_for, write_sales
from cdx.demo.processes import ProcessGroup, Role
from cdx.demo.realtime_traffic import RealtimeScenario, free_port, write_credentials
from cdx.demo.workload import hq_changes
from cdx.dialects import connect, get_dialect
from cdx.errors import FatalError
from cdx.verify import expected_channel_rows, verify_channel

OFFLINE_REGISTER = "store-0001-pos-01"
PROBE_CHANNEL = "store-0001"


def run_demo(db: str, topology: Path, scale: float, duration: float, hq_rate: float, sales_rate: float, seed: int,
             keep_running: bool) -> None:
    """Seed HQ, run every role as its own process, sync, trade, verify and report (see ``cdx demo --help``)."""
    from cdx.infra.kafka import launcher as kafka
    from cdx.infra.paths import state_dir

    if db not in ("sqlite", "postgresql"):
        raise FatalError(f"--db must be sqlite or postgresql, not {db!r}")
    if not topology.exists():
        raise FatalError(f"{topology} not found: run cdx demo from the repository root or pass --topology")
    console.rule("[bold]cdx demo")
    bootstrap = kafka.up(1)
    pg_database: Callable[[str], str] | None = None
    if db == "postgresql":
        from cdx.infra.postgres import launcher as pg

        admin = pg.up()
        pg_database = lambda name: pg.create_database(admin, name)  # noqa: E731
    console.print(f"Kafka at {bootstrap}; databases: {db}")
    t0 = time.perf_counter()
    env, counts = DemoEnv.create(topology, state_dir(), bootstrap, pg_database, scale, seed)
    console.print(f"seeded HQ with {sum(counts.values()):,} rows in {len(counts)} tables "
                  f"({time.perf_counter() - t0:.1f}s); run folder {env.run_dir}")
    group = ProcessGroup(env.run_dir / "logs", env.env)
    try:
        _run(env, group, duration, hq_rate, sales_rate, seed, keep_running)
    except KeyboardInterrupt:
        console.print("interrupted")
    finally:
        group.stop_all()


def _run(env: DemoEnv, group: ProcessGroup, duration: float, hq_rate: float, sales_rate: float, seed: int,
         keep_running: bool) -> None:
    """Start the pipeline, wait for the initial sync, run live traffic, settle, verify and report."""
    _start_pipeline(env, group)
    owners = [d.owner_id for d in env.topology.databases()]
    scenario = _start_realtime(env, group, owners)
    sales: dict[str, int] = dict.fromkeys(owners, 0)
    written: list[str] = []
    _initial_sync(env, group, owners, sales)
    probe, hq_done, live_s = _live_traffic(env, group, scenario, owners, duration, hq_rate, sales_rate, seed, sales,
                                           written)
    total_sales = len(written)
    expected = _expected_counts(env, owners)
    _watch(env, group, "settling", expected, sales, timeout=300,
           done=lambda snap: snap.hq_sales >= total_sales and all(c.rows == c.expected for c in snap.channels))
    ok = _report(env, owners, written, probe, hq_done, live_s, scenario)
    if keep_running:
        console.print("pipeline left running (--keep-running): [bold]cdx status[/] shows it; Ctrl-C stops every"
                      " process the demo started")
        while True:
            time.sleep(3600)
    if not ok:
        raise FatalError(f"verification failed; logs in {env.run_dir / 'logs'}")


def _start_pipeline(env: DemoEnv, group: ProcessGroup) -> None:
    """Enable HQ change tracking, then start capture, router, sinks, upload and the HQ upload sink."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "cdx.cli.main", "hq", "enable-tracking"], env=env.env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise FatalError(f"enabling change tracking failed: {result.stderr.strip()}")
    for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink", ["sink"]),
                       ("upload", ["channel", "upload"]), ("hq-upload-sink", ["hq", "upload-sink"])):
        group.start(name, args)


def _initial_sync(env: DemoEnv, group: ProcessGroup, owners: list[str], sales: dict[str, int]) -> None:
    """Wait until every channel database holds every row, and print the rate."""
    expected = _expected_counts(env, owners)
    t_sync = time.perf_counter()
    _watch(env, group, "initial full sync", expected, sales, timeout=900,
           done=lambda snap: all(c.rows == c.expected for c in snap.channels))
    sync_s = time.perf_counter() - t_sync
    synced_rows = sum(expected.values())
    console.print(f"initial sync: {synced_rows:,} rows into {len(owners)} databases in {sync_s:.1f}s "
                  f"({synced_rows / sync_s:,.0f} rows/s)")


def _live_traffic(env: DemoEnv, group: ProcessGroup, scenario: RealtimeScenario, owners: list[str],
                  duration: float, hq_rate: float, sales_rate: float, seed: int, sales: dict[str, int],
                  written: list[str]) -> tuple[LatencyProbe, dict[str, int], float]:
    """HQ changes, POS sales and the Real-time scenario for ``duration`` seconds (one register offline for
    the first half); returns the latency probe, the HQ changes made and the seconds it took."""
    topo = env.topology
    stop = threading.Event()
    probe = LatencyProbe(env.hq, env.hq_dialect, env.connector(PROBE_CHANNEL),
                         get_dialect(env.database(PROBE_CHANNEL).dialect),
                         terminal_for(topo, PROBE_CHANNEL).dataareaid)
    hq_done: dict[str, int] = {}
    threads = [threading.Thread(target=_hq_traffic, args=(env, stop, hq_rate, seed, hq_done), daemon=True),
               threading.Thread(target=scenario.run, args=(stop, written), daemon=True)]
    for owner in owners:
        threads.append(threading.Thread(target=_pos_traffic, args=(env, owner, stop, sales_rate, seed, sales,
                                                                    written), daemon=True))
    probe.start()
    for t in threads:
        t.start()
    t_live = time.perf_counter()
    _watch(env, group, f"live traffic ({OFFLINE_REGISTER} offline for the first half)", {}, sales,
           timeout=duration / 2, done=lambda snap: False, quiet_timeout=True)
    group.start("offline-sync", ["channel", "offline-sync"])
    _watch(env, group, "live traffic (all registers online)", {}, sales, timeout=duration / 2,
           done=lambda snap: False, quiet_timeout=True)
    stop.set()
    for t in threads:
        t.join(60)
    probe.stop()
    return probe, hq_done, time.perf_counter() - t_live


def _start_realtime(env: DemoEnv, group: ProcessGroup, owners: list[str]) -> RealtimeScenario:
    """``cdx realtime serve`` with a random API key per channel and register (in the processes' env)."""
    config, keys = write_credentials(env.run_dir, owners, group.env)
    port = free_port()
    group.start("realtime", ["realtime", "serve", "-c", str(config), "--port", str(port)])
    return RealtimeScenario(f"http://127.0.0.1:{port}", keys)


def _expected_counts(env: DemoEnv, owners: list[str]) -> dict[str, int]:
    with closing(env.hq()) as hq:
        out = {}
        for owner in owners:
            rows = expected_channel_rows(hq, env.hq_dialect, env.topology, owner)
            out[owner] = sum(len(v) for v in rows.values())
        return out


def _watch(env: DemoEnv, group: ProcessGroup, phase: str, expected: dict[str, int], sales: dict[str, int],
           timeout: float, done: Callable[..., bool], quiet_timeout: bool = False) -> None:
    """Refresh the view until ``done(snapshot)``; a live table on a terminal, a line every 5 s otherwise."""
    deadline = time.monotonic() + timeout
    interactive = console.is_terminal
    last_line = 0.0
    with Live(console=console, refresh_per_second=2, transient=False) if interactive else nullcontext() as live:
        while True:
            snap = snapshot(env, expected, sales, _lags(env))
            if live is not None:
                live.update(render(snap, group, phase))
            elif time.monotonic() - last_line > 5:
                last_line = time.monotonic()
                rows = sum(c.rows for c in snap.channels)
                console.print(f"[{phase}] {rows:,} rows in {len(snap.channels)} databases; "
                              f"{sum(sales.values()):,} sales written, {snap.hq_sales:,} at HQ")
            failed = group.failed()
            if failed:
                raise FatalError(_exit_report(failed))
            if done(snap):
                break
            if time.monotonic() > deadline:
                if quiet_timeout:
                    break
                raise FatalError(f"{phase} did not finish within {timeout:.0f}s; logs in {env.run_dir / 'logs'}")
            time.sleep(1.0)
    if not interactive and not quiet_timeout:
        console.print(render(snap, group, phase))


def _exit_report(failed: list[Role]) -> str:
    """Which roles exited, with the last lines of each log (the cause is nearly always there)."""
    parts = []
    for role in failed:
        try:
            tail = role.log.read_text(errors="replace").splitlines()[-12:]
        except OSError:
            tail = []
        body = "\n".join(f"    {line}" for line in tail)
        parts.append(f"{role.name} (exit code {role.proc.returncode}, log {role.log}):\n{body}")
    return "a pipeline process exited: " + "\n".join(parts)


def _lags(env: DemoEnv) -> dict[str, tuple[int | None, float | None]]:
    """Each database's lag as ``cdx status`` reports it (empty when it cannot be read right now)."""
    from cdx.connectors.sink.status import gather

    try:
        st = gather(env.topology, None, include_uploads=False)
    except Exception:
        return {}
    return {d.owner_id: (d.lag_records, d.lag_seconds) for d in st.databases}


def _hq_traffic(env: DemoEnv, stop: threading.Event, rate: float, seed: int, done: dict[str, int]) -> None:
    rng = random.Random(seed + 1)
    batch = max(1, int(rate / 10))
    with closing(env.hq()) as conn:
        while not stop.is_set():
            for op, n in hq_changes(conn, env.hq_dialect, rng, batch, batch=batch).items():
                done[op] = done.get(op, 0) + n
            stop.wait(batch / rate)


def _pos_traffic(env: DemoEnv, owner: str, stop: threading.Event, rate: float, seed: int, sales: dict[str, int],
                 written: list[str]) -> None:
    rng = random.Random(f"{seed}-{owner}")
    term = terminal_for(env.topology, owner)
    with closing(env.hq()) as hq:
        items = catalog(hq, env.hq_dialect, term.dataareaid)
    db = env.database(owner)
    d = get_dialect(db.dialect)
    with closing(connect(db.dialect, db.dsn)) as conn:
        while not stop.is_set():
            result = write_sales(conn, d, term.channel, term.store, term.terminal, 1, rng,
                                 dataareaid=term.dataareaid, items=items)
            written.extend(result.transaction_ids)
            sales[owner] += len(result.transaction_ids)
            stop.wait(1.0 / rate)


def _report(env: DemoEnv, owners: list[str], written: list[str], probe: LatencyProbe, hq_done: dict[str, int],
            live_s: float, scenario: RealtimeScenario) -> bool:
    hq = env.hq()
    d = env.hq_dialect
    table = Table(title="verification: every database against what HQ says it should hold", title_justify="left")
    for col in ("database", "tables", "rows", "result"):
        table.add_column(col)
    ok = True
    for owner in owners:
        db = env.database(owner)
        conn = connect(db.dialect, db.dsn)
        report = verify_channel(hq, d, conn, get_dialect(db.dialect), env.topology, owner)
        conn.close()
        rows = sum(t.actual_count for t in report.tables.values())
        ok &= report.ok
        table.add_row(owner, str(len(report.tables)), f"{rows:,}",
                      "[green]identical[/]" if report.ok else f"[red]{report.summary()}[/]")
    console.print(table)
    col = d.quote_ident("TRANSACTIONID")
    ids = [r[0] for r in hq.execute(f"SELECT {col} FROM {d.qualified('dbo', 'RETAILTRANSACTIONTABLE')}").fetchall()]
    hq.close()
    missing = set(written) - set(ids)
    dupes = len(ids) - len(set(ids))
    sales_ok = not missing and dupes == 0 and len(set(ids)) == len(set(written))
    ok &= sales_ok
    colour = "green" if sales_ok else "red"
    console.print(f"sales: [{colour}]{len(written):,} written in the channels and registers, {len(set(ids)):,} at HQ,"
                  f" {len(missing)} missing, {dupes} duplicates[/]")
    rt_ok, rt_lines = scenario.verify(env.topology)
    ok &= rt_ok
    colour = "green" if rt_ok else "red"
    for line in rt_lines:
        console.print(f"real-time service: [{colour}]{line}[/]")
    lat = probe.percentiles()
    if lat:
        console.print(f"propagation latency HQ commit -> channel commit ({lat['n']:.0f} probes): "
                      f"p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms, p99 {lat['p99']:.0f} ms,"
                      f" max {lat['max']:.0f} ms" + (f", {probe.lost} not seen" if probe.lost else ""))
    changes = sum(hq_done.values())
    console.print(f"live traffic: {changes:,} HQ changes ({changes / live_s:,.0f}/s) and {len(written):,} sales in"
                  f" {live_s:.0f}s")
    console.print(f"next: [bold]cdx status[/], the topics ({env.env['CDX_TOPIC_PREFIX']}.*), the databases in "
                  f"{env.run_dir / 'data'}, the logs in {env.run_dir / 'logs'}")
    console.print("[bold green]demo verified[/]" if ok else "[bold red]demo verification failed[/]")
    return ok
