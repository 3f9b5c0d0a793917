"""compare / normalise / checksum: database-independent equality, exact differences."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from cdx.verify import Rows, checksum, compare, normalise

T = ("ax", "T")


@pytest.mark.parametrize(("a", "b"), [
    (Decimal("1.50"), 1.5),
    (Decimal("1.5000000000000000"), "1.5"),
    (Decimal("100"), 100),
    (Decimal("1E+2"), 100),
    (Decimal("-0.000"), 0),
    (True, 1),
    (False, Decimal("0.0")),
    (0.1, Decimal("0.1")),
    (5637144576, Decimal("5637144576.0000000000000000")),
    (dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC), dt.datetime(2024, 5, 1, 12, 0, 0, 123456)),
    (dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.datetime(2024, 5, 1, 12, 0)),
    (uuid.UUID(int=5), str(uuid.UUID(int=5))),
    (b"\x01\xff", memoryview(b"\x01\xff")),
])
def test_normalise_equal(a: object, b: object) -> None:
    assert normalise(a) == normalise(b)


@pytest.mark.parametrize(("a", "b"), [
    (Decimal("1.5"), Decimal("1.51")),
    (None, ""),
    (None, "None"),
    (dt.date(2024, 5, 1), dt.datetime(2024, 5, 1)),
    (dt.datetime(2024, 5, 1, 0, 0, 0, 1), dt.datetime(2024, 5, 1)),
])
def test_normalise_different(a: object, b: object) -> None:
    assert normalise(a) != normalise(b)


def test_timestamp_digits() -> None:
    a, b = dt.datetime(2024, 5, 1, 0, 0, 0, 123456), dt.datetime(2024, 5, 1, 0, 0, 0, 123000)
    assert normalise(a) != normalise(b)
    assert normalise(a, 3) == normalise(b, 3) == "2024-05-01 00:00:00.123000"
    report = compare({T: {(1,): (1, a)}}, {T: {(1,): (1, b)}}, timestamp_digits=3)
    assert report.ok


def test_checksum_is_order_independent_and_type_tolerant() -> None:
    rows: Rows = {(i,): (i, Decimal(i) / 4, f"n{i}", i % 2 == 0) for i in range(1000)}
    reordered: Rows = {k: rows[k] for k in reversed(list(rows))}
    as_floats: Rows = {(i,): (i, i / 4, f"n{i}", int(i % 2 == 0)) for i in range(1000)}
    assert checksum(rows) == checksum(reordered) == checksum(as_floats)
    changed = dict(rows)
    changed[(5,)] = (5, Decimal("9"), "n5", False)
    assert checksum(changed) != checksum(rows)


def test_compare_reports_missing_extra_differing() -> None:
    expected: Rows = {(1,): (1, "a"), (2,): (2, "b"), (3,): (3, "c")}
    actual: Rows = {(1,): (1, "a"), (3,): (3, "C"), (4,): (4, "d")}
    report = compare({T: expected, ("ax", "U"): {(1,): (1,)}}, {T: actual, ("ax", "V"): {(9,): (9,)}})
    t = report.tables[T]
    assert (t.expected_count, t.actual_count) == (3, 3)
    assert t.missing == [(2,)] and t.extra == [(4,)] and t.differing == [((3,), (3, "c"), (3, "C"))]
    assert t.expected_checksum != t.actual_checksum and not t.ok
    assert report.tables[("ax", "U")].missing == [(1,)]  # table absent on the actual side
    assert report.tables[("ax", "V")].extra == [(9,)]  # table absent on the expected side
    assert not report.ok
    text = report.summary()
    assert "ax.T: expected 3 rows, found 3; 1 missing [(2,)], 1 extra [(4,)], 1 differing" in text


def test_compare_normalises_keys_and_rows() -> None:
    expected: Rows = {("usrt", Decimal("1.0")): ("usrt", Decimal("1.0"), Decimal("2.50"), True)}
    actual: Rows = {("usrt", 1): ("usrt", 1, 2.5, 1)}
    report = compare({T: expected}, {T: actual})
    assert report.ok, report.summary()
    assert report.tables[T].expected_checksum == report.tables[T].actual_checksum


def test_compare_handles_100k_rows() -> None:
    """A large comparison completes and agrees (speed belongs in bench/, not in a timed assertion)."""
    rows: Rows = {("usrt", i): ("usrt", i, Decimal(i) / 100, f"name {i}", dt.datetime(2024, 1, 1) +
                                dt.timedelta(seconds=i)) for i in range(100_000)}
    assert compare({T: rows}, {T: dict(rows)}).ok
