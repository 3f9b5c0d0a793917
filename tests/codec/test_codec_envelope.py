"""Envelope schemas (names, nullability, determinism) and envelope records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdx.codec import (
    Column,
    LogicalType,
    Op,
    SourceInfo,
    TableSchemas,
    change_records,
    columns_from_schemas,
    make_envelope,
)
from cdx.codec.envelope import SOURCE_SCHEMA
from cdx.codec.errors import EncodeError, SchemaError

L = LogicalType
COLS = [
    Column("ITEMID", L.STRING, primary_key=True, length=20),
    Column("DATAAREAID", L.STRING, primary_key=True, length=4),
    Column("NAME", L.STRING, nullable=False, length=60),
    Column("PRICE", L.DECIMAL, precision=32, scale=6),
    Column("MODIFIEDDATETIME", L.TIMESTAMP),
]
SRC = SourceInfo(connector="sqlserver", name="hq", db="AxDB", schema="dbo", table="InventTable", change_version=1234,
                 ts_ms=1_700_000_000_000)

# Golden fingerprints: they must never change for these columns (other processes, other runs, other
# machines and earlier releases all derive them independently).
GOLDEN_KEY_FP = "2e82118aa7b0ac84"
GOLDEN_VALUE_FP = "c6be90b6722c3403"  # source: Debezium field types (version string) + change_version


def _schemas() -> TableSchemas:
    return TableSchemas.build("hq.dbo.InventTable", COLS)


def test_schema_names_and_shapes() -> None:
    ts = _schemas()
    key, env = ts.key.to_dict(), ts.value.to_dict()
    assert (key["name"], key["namespace"]) == ("Key", "hq.dbo.InventTable")
    assert [f["name"] for f in key["fields"]] == ["ITEMID", "DATAAREAID"]
    assert all(not isinstance(f["type"], list) for f in key["fields"])
    assert (env["name"], env["namespace"]) == ("Envelope", "hq.dbo.InventTable")
    assert [f["name"] for f in env["fields"]] == ["before", "after", "source", "op", "ts_ms"]
    row = env["fields"][0]["type"][1]
    assert (row["name"], row["namespace"]) == ("Value", "hq.dbo.InventTable")
    assert env["fields"][1]["type"] == ["null", "hq.dbo.InventTable.Value"]
    assert env["fields"][2]["type"] == SOURCE_SCHEMA
    assert SOURCE_SCHEMA["namespace"] == "cdx" and SOURCE_SCHEMA["name"] == "Source"
    types = {f["name"]: f["type"] for f in row["fields"]}
    assert types["ITEMID"] == {"type": "string", "cdx.length": 20}
    # NOT NULL in HQ, but non-key: still nullable in Avro, default null.
    assert types["NAME"] == ["null", {"type": "string", "cdx.length": 60}]
    assert all(f.get("default", "absent") is None for f in row["fields"] if isinstance(f["type"], list))


def test_same_columns_same_fingerprints_and_golden_values() -> None:
    a, b = _schemas(), TableSchemas.build("hq.dbo.InventTable", list(COLS))
    assert a.key.fingerprint == b.key.fingerprint and a.value.fingerprint == b.value.fingerprint
    assert a.key.fingerprint_hex == GOLDEN_KEY_FP
    assert a.value.fingerprint_hex == GOLDEN_VALUE_FP
    other = TableSchemas.build("hq.dbo.InventTableModule", COLS)
    assert other.value.fingerprint != a.value.fingerprint


def test_fingerprints_are_the_same_in_other_processes() -> None:
    code = ("from tests_codec_probe import fps; print(fps())")
    here = Path(__file__).parent
    outs = set()
    for seed in ("0", "1", "12345"):
        path = f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": path}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())
    assert outs == {f"{GOLDEN_KEY_FP} {GOLDEN_VALUE_FP}"}


def test_no_primary_key_is_refused() -> None:
    with pytest.raises(SchemaError, match="primary-key"):
        TableSchemas.build("t", [Column("a", L.INT32)])


def test_make_envelope_checks_op_and_rows() -> None:
    row = {"ITEMID": "A", "DATAAREAID": "usrt", "NAME": "n"}
    env = make_envelope(Op.CREATE, after=row, source=SRC, ts_ms=5)
    assert env["op"] == "c" and env["before"] is None and env["source"]["change_version"] == 1234
    assert env["source"]["version"] == "0.1.0"
    assert env["source"]["snapshot"] == "false"
    assert make_envelope("r", after=row, source=SourceInfo(**{**SRC.__dict__, "snapshot": "last"}),
                         ts_ms=5)["source"]["snapshot"] == "last"
    with pytest.raises(EncodeError):
        make_envelope("c", before=row, source=SRC, ts_ms=1)
    with pytest.raises(EncodeError):
        make_envelope("d", after=row, source=SRC, ts_ms=1)
    with pytest.raises(ValueError):
        make_envelope("x", after=row, source=SRC, ts_ms=1)
    with pytest.raises(ValueError):
        SourceInfo(**{**SRC.__dict__, "snapshot": "maybe"}).to_avro()


def test_delete_is_followed_by_a_tombstone() -> None:
    ts = _schemas()
    key = ts.key_of({"ITEMID": "A", "DATAAREAID": "usrt", "NAME": "x"})
    delete = make_envelope("d", before=key, source=SRC, ts_ms=1)
    assert change_records(key, delete) == [(key, delete), (key, None)]
    update = make_envelope("u", before=key, after={**key, "NAME": "y"}, source=SRC, ts_ms=1)
    assert change_records(key, update) == [(key, update)]
    with pytest.raises(EncodeError):
        ts.key_of({"ITEMID": "A"})


def test_columns_from_schemas_for_a_sink() -> None:
    ts = _schemas()
    cols = columns_from_schemas(ts.value, ts.key)
    assert [c.name for c in cols] == [c.name for c in COLS]
    assert [c.primary_key for c in cols] == [True, True, False, False, False]
    assert cols[3] == Column("PRICE", L.DECIMAL, precision=32, scale=6)
    # Without the key schema: the non-null fields are the key.
    assert columns_from_schemas(ts.value) == cols
    # A bare row record works too.
    row = ts.value.to_dict()["fields"][0]["type"][1]
    assert columns_from_schemas(row, ts.key) == cols
