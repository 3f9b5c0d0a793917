"""Fixtures for the demo data tests: the sample topology and seeded SQLite HQ databases."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdx.demo.seed import seed_hq
from cdx.dialects import Connection, get_dialect
from cdx.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[2]
SMALL = 0.02
"""Scale of the seeded databases in these tests (100 products, 100 customers...)."""


@pytest.fixture(scope="session")
def sample() -> Topology:
    return load_topology(REPO / "topology.yaml", environ={})


@pytest.fixture
def seeded_sqlite(tmp_path: Path, sample: Topology) -> Iterator[Callable[..., Connection]]:
    """``make(name="hq", scale=SMALL, seed=42)``: a seeded SQLite HQ connection (closed after the test)."""
    d = get_dialect("sqlite")
    opened: list[Connection] = []

    def make(name: str = "hq", scale: float = SMALL, seed: int = 42) -> Connection:
        conn = d.connect(str(tmp_path / f"{name}.db"))
        opened.append(conn)
        seed_hq(conn, d, sample, scale=scale, seed=seed)
        return conn

    yield make
    for conn in opened:
        conn.close()
