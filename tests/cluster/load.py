"""Load on the pipeline (HQ changes, POS sales in every channel) and the propagation probe.

:class:`Load` runs, until stopped, HQ master-data changes at ``hq_rate`` per second and one sale
per ``1 / sales_rate`` seconds in every channel database (their ids go to ``Pipeline.sales``), plus
a :class:`TimedProbe`: one HQ price update every 0.2 s, timed from its HQ commit until the channel
``store-0001`` has committed it. The HQ changes insert products and update customers only
(:data:`HQ_MIX`): a price update or delete of the load could overwrite a probed price before it
arrived. Each probe keeps its HQ commit time, so the pause a broker failure caused is the slowest
probe committed around it.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from cdx.demo.latency import LatencyProbe
from cdx.demo.pos import catalog, terminal_for, write_sales
from cdx.demo.workload import hq_changes
from cdx.dialects import Connection, connect, get_dialect
from tests.cluster.pipeline import Pipeline, restart_dead

PROBE_CHANNEL = "store-0001"
PROBE_RUNS = itertools.count()
"""Each Load's probe starts 20,000 probes past the previous one's start (it writes amounts never used before)."""
HQ_MIX = {"product_insert": 40, "customer_update": 60}


class TimedProbe(LatencyProbe):
    """A :class:`LatencyProbe` that keeps ``(HQ commit time, latency ms)`` of every probe seen
    (``time.perf_counter`` clock)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.points: list[tuple[float, float]] = []
        self.error: str | None = None

    def _run(self) -> None:
        try:
            super()._run()
        except Exception as exc:  # reported by Load.stop()
            self.error = f"latency probe: {type(exc).__name__}: {exc}"

    def _wait_for(self, ch: Connection, table: str, c: Callable[[str], str], ph: str, recid: Any, amount: Decimal,
                  committed: float) -> float | None:
        seen = super()._wait_for(ch, table, c, ph, recid, amount, committed)
        if seen is not None:
            self.points.append((committed, (seen - committed) * 1000))
        return seen

    def window(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the probes committed within ``[start, end]``."""
        return [ms for at, ms in list(self.points) if start <= at <= end]


def figures(samples: Sequence[float]) -> dict[str, float]:
    """n, p50, p99 and max of latencies in ms (empty without samples)."""
    if not samples:
        return {}
    data = sorted(samples)
    q = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
    return {"n": len(data), "p50": q[49], "p99": q[98], "max": data[-1]}


def show(label: str, samples: Sequence[float]) -> str:
    f = figures(samples)
    if not f:
        return f"{label}: no probe"
    return f"{label}: {f['n']:.0f} probes, p50 {f['p50']:.0f} ms, p99 {f['p99']:.0f} ms, max {f['max']:.0f} ms"


class Load:
    def __init__(self, pipe: Pipeline, hq_rate: float = 20.0, sales_rate: float = 1.0, seed: int = 1) -> None:
        self.pipe, self.hq_rate, self.sales_rate, self.seed = pipe, hq_rate, sales_rate, seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        env = pipe.env
        db = env.database(PROBE_CHANNEL)
        self.probe = TimedProbe(env.hq, env.hq_dialect, env.connector(PROBE_CHANNEL), get_dialect(db.dialect),
                                terminal_for(env.topology, PROBE_CHANNEL).dataareaid, poll=0.02, timeout=300,
                                first=next(PROBE_RUNS) * 20_000)
        self.errors: list[str] = []

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._guard, args=(self._hq,), daemon=True)]
        self._threads += [threading.Thread(target=self._guard, args=(lambda c=c: self._pos(c),), daemon=True)
                          for c in self.pipe.channels]
        for t in self._threads:
            t.start()
        self.probe.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(120)
        self.probe.stop()
        assert not self.errors and self.probe.error is None, [*self.errors, self.probe.error]

    def _guard(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # reported by stop(): a load thread must not die silently
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _hq(self) -> None:
        rng = random.Random(self.seed)
        conn = self.pipe.env.hq()
        batch = max(1, int(self.hq_rate / 4))
        try:
            while not self._stop.is_set():
                hq_changes(conn, self.pipe.env.hq_dialect, rng, batch, batch=batch, mix=HQ_MIX)
                self._stop.wait(batch / self.hq_rate)
        finally:
            conn.close()

    def _pos(self, owner: str) -> None:
        env = self.pipe.env
        rng = random.Random(f"{self.seed}-{owner}")
        term = terminal_for(env.topology, owner)
        hq = env.hq()
        items = catalog(hq, env.hq_dialect, term.dataareaid)
        hq.close()
        db = env.database(owner)
        conn = connect(db.dialect, db.dsn)
        try:
            while not self._stop.is_set():
                result = write_sales(conn, get_dialect(db.dialect), term.channel, term.store, term.terminal, 1, rng,
                                     dataareaid=term.dataareaid, items=items)
                self.pipe.sales.extend(result.transaction_ids)
                self._stop.wait(1.0 / self.sales_rate)
        finally:
            conn.close()


def run_for(seconds: float, pipe: Pipeline, supervise: list[str] | None = None) -> None:
    """Sleep ``seconds`` while watching that no role exited (with ``supervise``: restarting those that did,
    see :func:`tests.cluster.pipeline.restart_dead`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        restart_dead(pipe, supervise)
        time.sleep(1)
