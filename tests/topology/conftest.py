"""Fixtures for the topology unit tests (no Kafka, no database)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdx.topology.dump import data_to_yaml

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

MINIMAL: dict[str, Any] = {
    "version": 1,
    "kafka": {"bootstrap_servers": "localhost:9092", "topic_prefix": "t"},
    "hq": {"dialect": "sqlite", "dsn": "sqlite:///hq.db"},
    "jobs": [
        {"id": "1040", "description": "Products", "direction": "download"},
        {"id": "1070", "description": "Channel configuration", "direction": "download"},
        {"id": "P-0001", "direction": "upload"},
    ],
    "subjobs": [
        {"id": "InventTable", "hq_table": "dbo.INVENTTABLE", "fields": ["ITEMID", "NAMEALIAS", "RECID"],
         "scheduled_by": ["1040"]},
        {"id": "RetailChannelTable", "hq_table": "dbo.RETAILCHANNELTABLE", "fields": ["RECID", "CHANNELTYPE"],
         "scheduled_by": ["1070"], "channel_filter": {"column": "RECID", "attribute": "recid"}},
        {"id": "RetailTransactionTable", "direction": "upload", "hq_table": "dbo.RETAILTRANSACTIONTABLE",
         "fields": ["TRANSACTIONID", "STORE", "TERMINAL", "REPLICATIONCOUNTERFROMORIGIN"],
         "replication_counter": "REPLICATIONCOUNTERFROMORIGIN", "scheduled_by": ["P-0001"]},
    ],
    "channel_data_groups": [
        {"id": "g1", "legal_entities": ["usrt"], "channels": [
            {"id": "s1", "database": {"dialect": "sqlite", "dsn": "sqlite:///s1.db"}, "attributes": {"recid": 1},
             "offline_registers": [{"id": "s1-pos", "database": {"dsn": "sqlite:///s1-pos.db"}}]},
        ]},
        {"id": "g2", "legal_entities": ["dert"], "channels": [
            {"id": "s2", "type": "online", "database": {"dsn": "sqlite:///s2.db"}, "attributes": {"recid": 2}},
        ]},
    ],
    "distribution_schedules": [
        {"id": "DL", "direction": "download", "jobs": ["1040", "1070"], "channel_data_groups": ["g1", "g2"]},
        {"id": "UP", "direction": "upload", "jobs": ["P-0001"], "channel_data_groups": ["g1", "g2"]},
    ],
}


@pytest.fixture
def minimal() -> Callable[[], dict[str, Any]]:
    """A factory of fresh copies of a small valid topology (as plain data)."""
    return lambda: copy.deepcopy(MINIMAL)


@pytest.fixture
def to_yaml() -> Callable[[Any], str]:
    return data_to_yaml


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def repo_root() -> Path:
    return REPO
