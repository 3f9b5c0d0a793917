"""A small topology for the extension tests: SQLite and PostgreSQL channels and an offline register."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from cdx.topology.loader import validate_topology
from cdx.topology.root import Topology


def topology(tmp: Path, pg_dsn: str | None = None, kafka: str = "127.0.0.1:1", **extensions: Any) -> Topology:
    channels: list[dict[str, Any]] = [{
        "id": "store-1", "database": {"dsn": f"sqlite:///{tmp / 'store-1.db'}"},
        "offline_registers": [{"id": "store-1-pos-1", "database": {"dsn": f"sqlite:///{tmp / 'pos-1.db'}"}}],
    }]
    if pg_dsn is not None:
        channels.append({"id": "store-pg", "database": {"dialect": "postgresql", "dsn": pg_dsn}})
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": kafka, "topic_prefix": f"mig{uuid.uuid4().hex[:8]}"},
        "hq": {"dsn": f"sqlite:///{tmp / 'hq.db'}"},
        "jobs": [{"id": "1040", "direction": "download"}, {"id": "P-0001", "direction": "upload"}],
        "subjobs": [
            {"id": "InventTable", "hq_table": "dbo.INVENTTABLE", "fields": ["ITEMID", "NAME"],
             "scheduled_by": ["1040"],
             "extension": {"table": "ext.CONTOSOINVENTTABLE", "fields": ["CONTOSOCOLOR"]}},
            {"id": "RetailTransactionTable", "direction": "upload", "hq_table": "dbo.RETAILTRANSACTIONTABLE",
             "fields": ["TRANSACTIONID", "STORE", "REPLICATIONCOUNTERFROMORIGIN"],
             "replication_counter": "REPLICATIONCOUNTERFROMORIGIN", "scheduled_by": ["P-0001"],
             "extension": {"table": "ext.CONTOSOTRANSACTIONTABLE", "key": ["TRANSACTIONID", "STORE"],
                           "fields": ["CONTOSOSEAT"]}},
        ],
        "channel_data_groups": [{"id": "g1", "legal_entities": ["usrt"], "channels": channels}],
        "distribution_schedules": [
            {"id": "D", "direction": "download", "jobs": ["1040"], "channel_data_groups": ["g1"]},
            {"id": "U", "direction": "upload", "jobs": ["P-0001"], "channel_data_groups": ["g1"]},
        ],
    }
    if extensions:
        data["extensions"] = extensions
    return validate_topology(data)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory
