"""The demo's world: a fresh data folder, the topology it runs with, and its databases.

``DemoEnv.create`` wipes ``<state>/demo``, picks a fresh topic prefix (so a rerun never reads
an older run's topics), writes the topology the processes use (the root ``topology.yaml``; with
``--db postgresql`` a copy whose HQ and channel databases are PostgreSQL databases; offline
registers stay SQLite files, as on a real register), creates and seeds HQ, and creates the
channel-side upload tables in every channel and register database, and the Real-time Service's
HQ tables.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdx.demo.retail_schema import create_channel_upload_tables
from cdx.demo.seed import seed_hq
from cdx.dialects import Connection, Dialect, connect, get_dialect
from cdx.realtime.schema import create_tables as create_realtime_tables
from cdx.topology import Topology, dump_topology, load_topology
from cdx.topology.loader import validate_topology
from cdx.topology.model import Database


@dataclass
class DemoEnv:
    run_dir: Path
    topology_path: Path
    topology: Topology
    env: dict[str, str]

    @property
    def hq_dialect(self) -> Dialect:
        return get_dialect(self.topology.hq.dialect)

    def hq(self) -> Connection:
        return connect(self.topology.hq.dialect, self.topology.hq.dsn)

    def database(self, owner_id: str) -> Database:
        for info in self.topology.databases():
            if info.owner_id == owner_id:
                return info.database
        raise KeyError(owner_id)

    def connector(self, owner_id: str) -> Callable[[], Connection]:
        db = self.database(owner_id)
        return lambda: connect(db.dialect, db.dsn)

    @classmethod
    def create(cls, root_topology: Path, state: Path, bootstrap: str, pg_database: Callable[[str], str] | None,
               scale: float, seed: int) -> tuple[DemoEnv, dict[str, int]]:
        run_dir = state / "demo"
        shutil.rmtree(run_dir, ignore_errors=True)
        data = run_dir / "data"
        data.mkdir(parents=True)
        prefix = f"demo{int(time.time())}"
        env = dict(os.environ, CDX_DATA_DIR=str(data), CDX_KAFKA_BOOTSTRAP=bootstrap, CDX_TOPIC_PREFIX=prefix)
        topo = load_topology(root_topology, environ=env)
        if pg_database is not None:
            topo = _on_postgres(topo, pg_database, prefix)
        path = run_dir / "topology.yaml"
        path.write_text(dump_topology(topo))
        env["CDX_TOPOLOGY"] = str(path)
        demo = cls(run_dir, path, load_topology(path, environ=env), env)
        counts = demo._prepare_databases(scale, seed)
        return demo, counts

    def _prepare_databases(self, scale: float, seed: int) -> dict[str, int]:
        d = self.hq_dialect
        conn = self.hq()
        counts = seed_hq(conn, d, self.topology, scale=scale, seed=seed)  # creates the HQ tables first
        create_realtime_tables(conn, d)
        conn.close()
        for info in self.topology.databases():
            cconn = connect(info.database.dialect, info.database.dsn)
            create_channel_upload_tables(cconn, get_dialect(info.database.dialect), self.topology)
            cconn.close()
        return counts


def _on_postgres(topo: Topology, create_database: Callable[[str], str], prefix: str) -> Topology:
    """HQ and channel databases moved to fresh PostgreSQL databases (``create_database(name) -> dsn``)."""

    def pg(name: str) -> dict[str, Any]:
        safe = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{name}".lower())
        return {"dialect": "postgresql", "dsn": create_database(safe)}

    data = topo.model_dump(mode="json", exclude_none=True)
    data["hq"].update(pg("hq"))
    for group in data["channel_data_groups"]:
        for channel in group["channels"]:
            channel["database"] = pg(channel["id"])
    return validate_topology(data)
