"""Column descriptions and their Avro types, both ways.

A ``Column`` is what capture reads from the HQ catalog and what a sink needs to create a table.
``column_field`` gives the Avro field of a row record; ``avro_field_to_column`` /
``avro_type_to_column`` go back from a schema (as found on a topic) to columns.

Avro mapping::

    INT32     "int"
    INT64     "long"
    FLOAT64   "double"
    DECIMAL   {"type": "bytes", "logicalType": "decimal", "precision": P, "scale": S}
    STRING    "string"            ({"type": "string", "cdx.length": N} when the length is known)
    BOOL      "boolean"
    BYTES     "bytes"             ({"type": "bytes", "cdx.length": N} when the length is known)
    DATE      {"type": "int", "logicalType": "date"}
    TIMESTAMP {"type": "long", "logicalType": "timestamp-micros"}   (UTC)
    UUID      {"type": "string", "logicalType": "uuid"}

Primary-key columns are plain (non-null) fields; every other column is ``["null", T]`` with default
null, whatever its ``nullable`` says, so a delete's ``before`` can carry the key alone and a new
column can be added compatibly. So a non-key column read back from a schema is always nullable.

Column names that are not valid Avro names are made valid (``naming.avro_name``) and the original
name is kept in the field's ``cdx.column`` attribute. Row dicts use the Avro field names
(``Column.field``), which are the column names for every ordinary identifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdx.codec.errors import SchemaError
from cdx.codec.naming import avro_name
from cdx.types import LogicalType

LENGTH_ATTR = "cdx.length"
COLUMN_ATTR = "cdx.column"


_SIZED = (LogicalType.STRING, LogicalType.BYTES)


@dataclass(frozen=True)
class Column:
    """One column of a table.

    ``precision``/``scale`` are required for DECIMAL and refused otherwise; ``length`` (max characters
    or bytes) is optional for STRING/BYTES and refused otherwise. A primary-key column is never
    nullable: ``nullable`` is forced to False for it.
    """

    name: str
    type: LogicalType
    nullable: bool = True
    primary_key: bool = False
    precision: int | None = None
    scale: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"column name must be a non-empty string, not {self.name!r}")
        try:
            typ = LogicalType(self.type)
        except ValueError:
            raise SchemaError(
                f"column {self.name!r}: unknown type {self.type!r}; use one of {[t.value for t in LogicalType]}"
            ) from None
        object.__setattr__(self, "type", typ)
        if self.primary_key and self.nullable:
            object.__setattr__(self, "nullable", False)
        if typ is LogicalType.DECIMAL:
            p, s = self.precision, self.scale
            if p is None or s is None:
                raise SchemaError(f"column {self.name!r}: DECIMAL needs precision and scale")
            if not (isinstance(p, int) and isinstance(s, int) and p >= 1 and 0 <= s <= p):
                raise SchemaError(
                    f"column {self.name!r}: DECIMAL({p}, {s}) is invalid; need precision >= 1 and"
                    " 0 <= scale <= precision"
                )
        elif self.precision is not None or self.scale is not None:
            raise SchemaError(f"column {self.name!r}: precision/scale apply to DECIMAL only, not {typ.value}")
        if self.length is not None:
            if typ not in _SIZED:
                raise SchemaError(f"column {self.name!r}: length applies to STRING/BYTES only, not {typ.value}")
            if not isinstance(self.length, int) or self.length < 1:
                raise SchemaError(f"column {self.name!r}: length must be a positive int, not {self.length!r}")

    @property
    def field(self) -> str:
        """The Avro field name (and row-dict key) of this column."""
        return avro_name(self.name)


_AVRO_TYPES: dict[LogicalType, Any] = {
    LogicalType.INT32: "int", LogicalType.INT64: "long", LogicalType.FLOAT64: "double", LogicalType.BOOL: "boolean",
    LogicalType.DATE: {"type": "int", "logicalType": "date"},
    LogicalType.TIMESTAMP: {"type": "long", "logicalType": "timestamp-micros"},
    LogicalType.UUID: {"type": "string", "logicalType": "uuid"},
}
_SIMPLE_TYPES = {"int": LogicalType.INT32, "long": LogicalType.INT64, "float": LogicalType.FLOAT64,
                 "double": LogicalType.FLOAT64, "boolean": LogicalType.BOOL}
"""Avro types read back as columns (``float`` included, as other producers write it)."""


def column_avro_type(column: Column) -> Any:
    """The Avro type of ``column``'s values, without the null branch."""
    t = column.type
    if t is LogicalType.DECIMAL:
        return {"type": "bytes", "logicalType": "decimal", "precision": column.precision, "scale": column.scale}
    if t in _AVRO_TYPES:
        fixed = _AVRO_TYPES[t]
        return dict(fixed) if isinstance(fixed, dict) else fixed
    base = "string" if t is LogicalType.STRING else "bytes"
    if column.length is not None:
        return {"type": base, LENGTH_ATTR: column.length}
    return base


def column_field(column: Column) -> dict[str, Any]:
    """The Avro record field of ``column`` in a row (``Value``) or ``Key`` record."""
    field: dict[str, Any] = {"name": column.field}
    if column.primary_key:
        field["type"] = column_avro_type(column)
    else:
        field["type"] = ["null", column_avro_type(column)]
        field["default"] = None
    if column.field != column.name:
        field[COLUMN_ATTR] = column.name
    return field


def check_unique_fields(columns: Sequence[Column]) -> None:
    """Refuse duplicate column names and two columns that map to the same Avro field name."""
    by_field: dict[str, str] = {}
    names: set[str] = set()
    for c in columns:
        if c.name in names:
            raise SchemaError(f"duplicate column name {c.name!r}")
        names.add(c.name)
        other = by_field.setdefault(c.field, c.name)
        if other != c.name:
            raise SchemaError(f"columns {other!r} and {c.name!r} both map to the Avro field {c.field!r}")


def _unwrap(avro_type: Any) -> tuple[Any, bool]:
    if isinstance(avro_type, list):
        branches = [b for b in avro_type if b != "null" and not (isinstance(b, Mapping) and b.get("type") == "null")]
        if len(branches) != 1:
            raise SchemaError(f"union {avro_type!r} is not ['null', T]: cdx rows cannot hold it")
        return branches[0], len(branches) != len(avro_type)
    return avro_type, False


def avro_type_to_column(name: str, avro_type: Any, *, primary_key: bool = False) -> Column:
    """The ``Column`` for a field ``name`` of Avro type ``avro_type`` (``["null", T]`` means nullable).

    Accepts what cdx writes plus close relatives found in other producers' schemas (float,
    timestamp-millis, fixed decimals).
    """
    inner, nullable = _unwrap(avro_type)
    if isinstance(inner, Mapping):
        base = inner.get("type")
        logical = inner.get("logicalType")
        length = inner.get(LENGTH_ATTR)
    else:
        base, logical, length = inner, None, None
    if isinstance(base, Mapping | list):
        return avro_type_to_column(name, base if not nullable else ["null", base], primary_key=primary_key)

    def col(t: LogicalType, **kw: Any) -> Column:
        return Column(name, t, nullable=nullable and not primary_key, primary_key=primary_key, **kw)

    if logical == "decimal" and base in ("bytes", "fixed"):
        assert isinstance(inner, Mapping)
        return col(LogicalType.DECIMAL, precision=int(inner["precision"]), scale=int(inner.get("scale", 0)))
    if logical == "date" and base == "int":
        return col(LogicalType.DATE)
    if logical in ("timestamp-micros", "timestamp-millis") and base == "long":
        return col(LogicalType.TIMESTAMP)
    if logical == "uuid" and base == "string":
        return col(LogicalType.UUID)
    if base in _SIMPLE_TYPES:
        return col(_SIMPLE_TYPES[base])
    if base in ("string", "bytes"):
        return col(LogicalType.STRING if base == "string" else LogicalType.BYTES,
                   length=int(length) if length is not None else None)
    raise SchemaError(f"field {name!r}: Avro type {avro_type!r} has no cdx column type")


def avro_field_to_column(field: Mapping[str, Any], *, primary_key: bool = False) -> Column:
    """The ``Column`` of one Avro record field (its original name from ``cdx.column`` if present)."""
    name = field.get(COLUMN_ATTR, field["name"])
    return avro_type_to_column(name, field["type"], primary_key=primary_key)
