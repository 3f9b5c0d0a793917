"""Shared pieces of the benchmarks: timing, medians, percentiles, the result table and JSON."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(highlight=False, width=160)


@dataclass
class Result:
    """One measured figure beside its baseline (both medians over ``runs``)."""

    bench: str
    case: str
    unit: str
    value: float
    baseline: float | None = None
    baseline_name: str = ""
    runs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {}
    data = sorted(samples_ms)
    if len(data) == 1:
        return {"p50": data[0], "p95": data[0], "p99": data[0]}
    q = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98]}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def show(results: list[Result], title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("bench", "case", "value", "baseline", "ratio", "runs"):
        table.add_column(col, justify="right" if col in ("value", "baseline", "ratio", "runs") else "left")
    for r in results:
        table.add_row(r.bench, r.case, f"{r.value:,.0f} {r.unit}",
                      f"{r.baseline:,.0f} {r.unit} ({r.baseline_name})" if r.baseline else "",
                      f"{r.ratio:.2f}" if r.ratio else "", str(r.runs))
    console.print(table)


def save(results: list[Result], name: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    meta = {"machine": platform.machine(), "python": platform.python_version(), "cpus": _cpus()}
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2, default=str))
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
