"""The kernel's database-independent column types, shared by the codec (Avro) and the dialects (SQL)."""

from __future__ import annotations

from enum import StrEnum


class LogicalType(StrEnum):
    """A column's type as cdx knows it; each dialect maps it to DDL, the codec to Avro."""

    INT32 = "int32"
    INT64 = "int64"
    FLOAT64 = "float64"
    DECIMAL = "decimal"
    STRING = "string"
    BOOL = "bool"
    BYTES = "bytes"
    DATE = "date"
    TIMESTAMP = "timestamp"
    UUID = "uuid"
