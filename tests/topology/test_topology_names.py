"""Environment references, SQL identifiers, table references, DSNs and topic names."""

from __future__ import annotations

import pytest

from cdx import topics
from cdx.topology.dsn import Dialect, dsn_key, infer_dialect, redact
from cdx.topology.env import EnvError, escape, resolve
from cdx.topology.identifiers import TableRef, check_identifier, check_topic_id

ENV = {"A": "alpha", "EMPTY": "", "DIR": "/data"}


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("${A}", "alpha"),
    ("x-${A}-y", "x-alpha-y"),
    ("${MISSING:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${A:-fallback}", "alpha"),
    ("${MISSING:-}", ""),
    ("${MISSING:-${DIR}/x}", "/data/x"),
    ("sqlite:///${CDX_DATA_DIR:-.cdx/data}/hq.db", "sqlite:///.cdx/data/hq.db"),
    ("$${A}", "${A}"),
    ("cost $5 and $A", "cost $5 and $A"),
])
def test_resolve(text: str, expected: str) -> None:
    assert resolve(text, ENV) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${MISSING}", "environment variable MISSING is not set"),
    ("${A", "unterminated"),
    ("${MISSING:-abc", "unterminated"),
    ("${1A}", "expected a variable name"),
    ("${A?err}", "only '${NAME}' and '${NAME:-default}' are supported"),
])
def test_resolve_errors(text: str, message: str) -> None:
    with pytest.raises(EnvError, match=message.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")) as info:
        resolve(text, ENV)
    if "MISSING}" in text:
        assert info.value.variable == "MISSING"


def test_escape_round_trips() -> None:
    for text in ("${A}", "a$${b", "$$", "${"):
        assert resolve(escape(text), {}) == text


@pytest.mark.parametrize("name", ["ITEMID", "_x", "a1", "A" * 128, "select"])
def test_valid_identifiers(name: str) -> None:
    assert check_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1A", "A B", "a-b", "a.b", "A" * 129, "é"])
def test_invalid_identifiers(name: str) -> None:
    with pytest.raises(ValueError):
        check_identifier(name)


@pytest.mark.parametrize("value", ["1040", "P-0001", "us-stores", "a.b_c"])
def test_topic_ids(value: str) -> None:
    assert check_topic_id(value) == value


@pytest.mark.parametrize("value", ["", ".", "..", "a b", "a/b", "x" * 101, "ü"])
def test_bad_topic_ids(value: str) -> None:
    with pytest.raises(ValueError):
        check_topic_id(value)


def test_table_ref() -> None:
    ref = TableRef.parse("ax.INVENTTABLE")
    assert (ref.schema, ref.name, str(ref)) == ("ax", "INVENTTABLE", "ax.INVENTTABLE")
    bare = TableRef.parse("INVENTTABLE")
    assert bare.schema is None and str(bare) == "INVENTTABLE"
    assert bare.with_default_schema("dbo") == TableRef("dbo", "INVENTTABLE")
    assert TableRef("AX", "inventtable").key() == ref.key()
    assert bare.key("ax") == ref.key()
    for bad in ("a.b.c", "", "ax.", "ax.1T"):
        with pytest.raises(ValueError):
            TableRef.parse(bad)


def test_topics() -> None:
    assert topics.table_topic("cdx", "hq", "dbo", "INVENTTABLE") == "cdx.hq.dbo.INVENTTABLE"
    assert topics.table_topic("cdx", "hq", None, "T") == "cdx.hq.public.T"
    assert topics.group_topic("cdx", "us-stores") == "cdx.group.us-stores"
    assert topics.upload_topic("cdx", "store-0001") == "cdx.upload.store-0001"
    assert topics.schemas_topic("cdx") == "cdx._schemas"
    assert topics.positions_topic("cdx") == "cdx._capture_positions"
    assert topics.dlq_topic("cdx") == "cdx._dlq"
    with pytest.raises(ValueError, match="not legal"):
        topics.group_topic("cdx", "us stores")
    with pytest.raises(ValueError, match="Kafka allows 249"):
        topics.table_topic("p" * 100, "d" * 100, "s", "t" * 60)
    assert topics.collision_key("a.b") == topics.collision_key("a_b")


@pytest.mark.parametrize(("dsn", "dialect"), [
    ("sqlite:///x.db", Dialect.SQLITE),
    ("postgresql://u:p@h:5432/db", Dialect.POSTGRESQL),
    ("postgres://h/db", Dialect.POSTGRESQL),
    ("host=h dbname=db", Dialect.POSTGRESQL),
    ("Driver={ODBC Driver 18 for SQL Server};Server=h;Database=db;", Dialect.SQLSERVER),
    ("mssql://h/db", Dialect.SQLSERVER),
    ("whatever", None),
])
def test_infer_dialect(dsn: str, dialect: Dialect | None) -> None:
    assert infer_dialect(dsn) == dialect


def test_dsn_identity_and_redaction() -> None:
    assert dsn_key(Dialect.SQLITE, "sqlite:///a/../b.db") == dsn_key(Dialect.SQLITE, "sqlite:///b.db")
    assert dsn_key(Dialect.POSTGRESQL, "postgresql://u@H/db") == dsn_key(Dialect.POSTGRESQL,
                                                                          "postgresql://v:pw@h:5432/db")
    odbc = "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql1,1433;Database=Store1;UID=u;PWD=secret;"
    assert dsn_key(Dialect.SQLSERVER, odbc) == "sqlserver://sql1:1433/Store1"
    assert "secret" not in redact(odbc)
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
