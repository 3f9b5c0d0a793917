"""Propagation latency from HQ commit to channel commit, measured end to end.

A probe updates one HQ price row at a time (``dbo.PRICEDISCTABLE.AMOUNT``), notes the commit time,
then polls one channel database until the new amount is visible there. The difference is the
whole pipeline's latency (capture poll + transaction, routing, sink batch + commit), with the
polling interval (default 5 ms) as resolution.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdx.dialects import Connection, Dialect


class LatencyProbe:
    def __init__(self, hq: Callable[[], Connection], hq_dialect: Dialect, channel: Callable[[], Connection],
                 channel_dialect: Dialect, dataareaid: str, interval: float = 0.2, poll: float = 0.005,
                 timeout: float = 30.0, first: int = 0) -> None:
        self._hq_factory, self._channel_factory = hq, channel
        self.hq_dialect, self.channel_dialect = hq_dialect, channel_dialect
        self.dataareaid = dataareaid
        self.interval, self.poll, self.timeout = interval, poll, timeout
        self.first = first
        """Number of the first probe: a later probe on the same databases starts past an earlier one's last,
        so it never writes an amount a probed row already holds (that would be seen at once)."""
        self.samples_ms: list[float] = []
        self.lost = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        hq, ch = self._hq_factory(), self._channel_factory()
        hq_table = self.hq_dialect.qualified("dbo", "PRICEDISCTABLE")
        ch_table = self.channel_dialect.qualified("ax", "PRICEDISCTABLE")
        q = self.hq_dialect.quote_ident
        c = self.channel_dialect.quote_ident
        p, cp = self.hq_dialect.placeholder, self.channel_dialect.placeholder
        with self.hq_dialect.transaction(hq):
            recids = [r[0] for r in hq.execute(
                f"SELECT {q('RECID')} FROM {hq_table} WHERE {q('DATAAREAID')} = {p} ORDER BY {q('RECID')}",
                (self.dataareaid,)).fetchall()[:50]]
        n = self.first
        try:
            while not self._stop.is_set() and recids:
                recid = recids[n % len(recids)]
                amount = Decimal(f"{9000 + n % 997}.{n % 100:02d}")
                n += 1
                with self.hq_dialect.transaction(hq):
                    hq.execute(f"UPDATE {hq_table} SET {q('AMOUNT')} = {p} WHERE {q('DATAAREAID')} = {p}"
                               f" AND {q('RECID')} = {p}", (self.hq_dialect.encode(amount), self.dataareaid, recid))
                committed = time.perf_counter()
                seen = self._wait_for(ch, ch_table, c, cp, recid, amount, committed)
                if seen is None and self._stop.is_set():
                    break  # stopped while waiting: neither seen nor lost
                if seen is None:
                    # not lost when the workload deleted the probed row meanwhile
                    self.lost += self._exists(hq, hq_table, q, p, recid)
                else:
                    self.samples_ms.append((seen - committed) * 1000)
                self._stop.wait(self.interval)
        finally:
            hq.close()
            ch.close()

    def _exists(self, hq: Connection, table: str, q: Callable[[str], str], ph: str, recid: Any) -> bool:
        with self.hq_dialect.transaction(hq):
            row = hq.execute(f"SELECT 1 FROM {table} WHERE {q('DATAAREAID')} = {ph} AND {q('RECID')} = {ph}",
                             (self.dataareaid, recid)).fetchone()
        return row is not None

    def _wait_for(self, ch: Connection, table: str, c: Callable[[str], str], ph: str, recid: Any, amount: Decimal,
                  committed: float) -> float | None:
        sql = f"SELECT {c('AMOUNT')} FROM {table} WHERE {c('DATAAREAID')} = {ph} AND {c('RECID')} = {ph}"
        while time.perf_counter() - committed < self.timeout and not self._stop.is_set():
            try:
                row = ch.execute(sql, (self.dataareaid, recid)).fetchone()
                ch.rollback()
            except Exception:  # the table may not exist yet, or the database is busy
                row = None
                ch.rollback()
            if row is not None and Decimal(str(row[0])) == amount:
                return time.perf_counter()
            time.sleep(self.poll)
        return None

    def percentiles(self) -> dict[str, float]:
        if not self.samples_ms:
            return {}
        data = sorted(self.samples_ms)
        q = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
        return {"n": len(data), "p50": q[49], "p95": q[94], "p99": q[98], "max": data[-1]}
