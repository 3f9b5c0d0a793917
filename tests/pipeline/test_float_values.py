"""Which floating values reach a channel exactly: special doubles (and a ``real`` HQ column) through real
``cdx capture`` -> ``cdx route`` -> ``cdx sink`` from a PostgreSQL HQ into a SQLite and a PostgreSQL channel.
The expectations per dialect are the table in docs/sinks.md ("Floating-point values")."""

from __future__ import annotations

import math
import struct
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.helpers import Databases, cli, database, pipeline, wait_for

pytestmark = pytest.mark.integration

MAX, TINY = sys.float_info.max, 5e-324


def f32(x: float) -> float:
    """``x`` rounded to float32 (what a ``real`` column holds), as a double."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# id: (double value, real value)
VALUES: dict[int, tuple[float, float]] = {
    1: (-0.0, -0.0), 2: (0.0, 0.0), 3: (math.nan, math.nan), 4: (math.inf, math.inf), 5: (-math.inf, -math.inf),
    6: (TINY, f32(1.401298464324817e-45)),                        # smallest subnormals
    7: (2.2250738585072014e-308, f32(1.1754943508222875e-38)),    # smallest normals
    8: (MAX, f32(3.4028234663852886e38)), 9: (-MAX, -f32(3.4028234663852886e38)),
    10: (0.1, f32(0.1)), 11: (1.0000000000000002, f32(1.0000001192092896)), 12: (-1e-300, f32(-1e-30)),
}
SQLITE_CHANGES = {-0.0: 0.0}
"""What SQLite stores instead (its REAL columns keep -0.0 as integer 0); NaN becomes NULL."""

TOPOLOGY = """
kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}}}
hq: {{name: hq, dialect: postgresql, dsn: "{hq}"}}
jobs: [{{id: J1, direction: download}}]
subjobs: [{{id: Floats, hq_table: dbo.FLOATS, fields: [ID, D, R], scheduled_by: [J1]}}]
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: lite, database: {{dialect: sqlite, dsn: "{lite}"}}}}
      - {{id: pg, database: {{dialect: postgresql, dsn: "{pg}"}}}}
distribution_schedules: [{{id: S1, direction: download, jobs: [J1], channel_data_groups: [g1]}}]
"""


def bits(value: Any) -> Any:
    """A float's exact bit pattern (so -0.0 != 0.0 and NaN == NaN); anything else as is."""
    return struct.pack(">d", value).hex() if isinstance(value, float) else value


def expected(dialect: str, hq: dict[int, tuple[float, float]]) -> dict[int, tuple[Any, Any]]:
    """What a channel of ``dialect`` holds for the HQ values ``hq`` (as HQ returns them)."""
    def one(v: float) -> Any:
        if dialect == "sqlite":
            if math.isnan(v):
                return None
            v = SQLITE_CHANGES.get(v, v) if v == 0 else v
        return bits(v)

    return {i: (one(d), one(r)) for i, (d, r) in hq.items()}


def test_special_doubles_per_dialect(tmp_path: Path, kafka: str, postgres_server: str) -> None:
    dsns = {"hq": database("postgresql", tmp_path, "hq", postgres_server),
            "lite": database("sqlite", tmp_path, "lite", None),
            "pg": database("postgresql", tmp_path, "pg", postgres_server)}
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY.format(bootstrap=kafka, prefix=f"fl{uuid.uuid4().hex[:8]}", **dsns))
    hq = Databases("postgresql")
    hq.run(dsns["hq"], ('CREATE SCHEMA IF NOT EXISTS dbo', ()),
           ('CREATE TABLE dbo."FLOATS" ("ID" bigint PRIMARY KEY, "D" double precision, "R" real)', ()),
           *[('INSERT INTO dbo."FLOATS" VALUES ({p}, {p}, {p})', (i, d, r)) for i, (d, r) in VALUES.items()])
    cur = hq.conn(dsns["hq"]).cursor()
    cur.execute('SELECT "ID", "D", "R" FROM dbo."FLOATS"')
    at_hq: dict[int, tuple[float, float]] = {i: (d, r) for i, d, r in cur.fetchall()}
    hq.conn(dsns["hq"]).rollback()
    assert {i: bits(d) for i, (d, _) in at_hq.items()} == {i: bits(d) for i, (d, _) in VALUES.items()}
    # a real column reads as the shortest decimal of its float32 value (PostgreSQL's output), parsed as a
    # double: equal to the stored value once rounded to float32, not its exact widening (0.1, not 0.100000001)
    assert {i: bits(f32(r)) for i, (_, r) in at_hq.items()} == {i: bits(r) for i, (_, r) in VALUES.items()}
    assert at_hq[10][1] == 0.1
    channels = {"lite": Databases("sqlite"), "pg": Databases("postgresql")}

    def read(owner: str) -> dict[int, tuple[Any, Any]]:
        dbs = channels[owner]
        d, conn = dbs.dialect, dbs.conn(dsns[owner])
        with d.transaction(conn):
            if not d.table_exists(conn, "ax", "FLOATS"):
                return {}
            c = conn.cursor()
            c.execute(f"SELECT {d.columns_sql(['ID', 'D', 'R'])} FROM {d.qualified('ax', 'FLOATS')}")
            return {int(i): (bits(dv), bits(rv)) for i, dv, rv in c.fetchall()}

    group = pipeline(tmp_path, path)
    try:
        cli(group, "hq", "enable-tracking")
        for name, args in (("capture", ["capture"]), ("router", ["route"]), ("sink", ["sink"])):
            group.start(name, args)
        wait_for(lambda: None if all(len(read(o)) == len(VALUES) for o in channels) else "rows missing", group, 120,
                 "every row in both channels")
    finally:
        group.stop_all()
    for owner, dialect in (("pg", "postgresql"), ("lite", "sqlite")):
        got, want = read(owner), expected(dialect, at_hq)
        assert got == want, {i: (got[i], want[i]) for i in want if got.get(i) != want[i]}
    for dbs in (hq, *channels.values()):
        dbs.close()
