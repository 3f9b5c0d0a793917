"""SQLite's column-wise encoding of bulk rows (``SQLiteDialect._encode_columns``) equals ``encode`` value by value."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from cdx.dialects import get_dialect

T = dt.datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("column", [
    [T, T.replace(microsecond=7), dt.datetime(1, 1, 1)],
    [T, None, T],
    [T.replace(tzinfo=dt.UTC), T],
    [T.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5))), None],
    [Decimal("1.2500"), Decimal("-0.0001"), Decimal("1E+3"), Decimal(0)],
    [Decimal("1.5"), None],
    [dt.date(2026, 1, 2), None],
    [uuid.UUID(int=5), uuid.UUID(int=6)],
    [True, False, None],
    [1, 2**63 - 1, -(2**63)],
    [1, 2**63, None],
    ["x", None, "\x00"],
    [b"\x00", bytearray(b"a"), None],
    [1.5, None],
])
def test_columns_encode_as_encode_does(column: list[Any]) -> None:
    d = get_dialect("sqlite")
    rows = [(i, v) for i, v in enumerate(column)]
    data, exact = d._encode_columns(rows)  # type: ignore[attr-defined]
    want = [(i, d.encode(v)) for i, v in enumerate(column)]
    assert [tuple(r) for r in data] == want
    assert [[type(x) for x in r] for r in data] == [[type(x) for x in r] for r in want]
    kinds = {type(v) for _, v in want if v is not None}
    ints = [v for _, v in want if type(v) is int]
    assert exact == (kinds <= {str, int} and all(-(2**63) <= v < 2**63 for v in ints))
