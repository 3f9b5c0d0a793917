"""Hypothesis strategies: random column sets and rows that fit them."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from hypothesis import strategies as st

from cdx.codec.columns import Column, LogicalType

L = LogicalType
UTC = dt.UTC

# Mostly ordinary identifiers, sometimes names that need sanitizing ("Order Date", "2nd-col").
_plain = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_odd = st.from_regex(r"[0-9A-Za-z][A-Za-z0-9 $#-]{0,10}", fullmatch=True)
names = st.one_of(_plain, _plain, _plain, _odd)


@st.composite
def column_type(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(st.sampled_from(list(L)))
    kw: dict[str, Any] = {"type": t}
    if t is L.DECIMAL:
        p = draw(st.integers(1, 38))
        kw.update(precision=p, scale=draw(st.integers(0, p)))
    elif t in (L.STRING, L.BYTES):
        kw["length"] = draw(st.one_of(st.none(), st.integers(1, 8000)))
    return kw


@st.composite
def columns(draw: st.DrawFn, min_size: int = 1, max_size: int = 10) -> list[Column]:
    """A valid column list: unique names and Avro fields, at least one primary-key column."""
    raw = draw(st.lists(names, min_size=min_size, max_size=max_size))
    out: list[Column] = []
    seen: set[str] = set()
    for i, name in enumerate(raw):
        probe = Column(name, L.INT32)
        if probe.field in seen:
            continue
        seen.add(probe.field)
        pk = i == 0 or (draw(st.booleans()) and draw(st.booleans()))
        nullable = draw(st.booleans())
        out.append(Column(name, nullable=nullable, primary_key=pk, **draw(column_type())))
    return out


def value_for(c: Column) -> st.SearchStrategy[Any]:
    t = c.type
    if t is L.INT32:
        return st.integers(-(2**31), 2**31 - 1)
    if t is L.INT64:
        return st.integers(-(2**63), 2**63 - 1)
    if t is L.FLOAT64:
        return st.floats(allow_nan=False)
    if t is L.DECIMAL:
        assert c.precision is not None and c.scale is not None
        p, s = c.precision, c.scale
        exact = decimal.Context(prec=100)  # the default context (28 digits) would round 38-digit values
        return st.integers(-(10**p - 1), 10**p - 1).map(lambda n: decimal.Decimal(n).scaleb(-s, context=exact))
    if t is L.STRING:
        return st.text(max_size=30)
    if t is L.BOOL:
        return st.booleans()
    if t is L.BYTES:
        return st.binary(max_size=30)
    if t is L.DATE:
        return st.dates()
    if t is L.TIMESTAMP:
        # Aware (any zone: encoded as the same instant) or naive (taken as UTC).
        aware = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                             timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-5))]))
        return st.one_of(aware, st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)))
    if t is L.UUID:
        return st.uuids()
    raise AssertionError(t)


@st.composite
def row_for(draw: st.DrawFn, cols: list[Column]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for c in cols:
        v = value_for(c)
        row[c.field] = draw(v if c.primary_key else st.one_of(st.none(), v))
    return row


def expected(value: Any) -> Any:
    """What decoding gives back for an encoded Python value (naive datetimes read back as UTC)."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC)
    if isinstance(value, dict):
        return {k: expected(v) for k, v in value.items()}
    return value
