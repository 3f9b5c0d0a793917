"""Fixtures of the conformance suites: one ``Db`` per dialect, parametrized.

``db`` runs a test against SQLite (a fresh file), PostgreSQL (the module's fresh
database, a fresh schema per test) and SQL Server (``CDX_TEST_SQLSERVER_DSN``, a fresh
schema per test; marked ``sqlserver``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from cdx.dialects import get_dialect

from .harness import Db

DIALECTS = ["sqlite", "postgresql", pytest.param("sqlserver", marks=pytest.mark.sqlserver)]


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    name = request.param
    schema = f"s_{uuid.uuid4().hex[:8]}"
    if name == "sqlite":
        dsn = f"sqlite:///{request.getfixturevalue('sqlite')}"
    elif name == "postgresql":
        dsn = request.getfixturevalue("postgres")
    else:
        dsn = os.environ.get("CDX_TEST_SQLSERVER_DSN", "")
        if not dsn:
            pytest.skip("set CDX_TEST_SQLSERVER_DSN to run the SQL Server conformance tests")
    handle = Db(get_dialect(name), dsn, schema)
    yield handle
    handle.close()
