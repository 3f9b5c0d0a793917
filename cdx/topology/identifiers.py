"""Names that end up in SQL statements and Kafka topic names, validated once at load time.

- :data:`Identifier`: a SQL identifier, ``^[A-Za-z_][A-Za-z0-9_]*$``, at most 128 characters.
  Sinks always quote identifiers, so reserved words are allowed; matching is case-insensitive
  (as in SQL Server, where the HQ database lives in CDX).
- :data:`TopicId`: an id that becomes part of a Kafka topic name: ``[A-Za-z0-9._-]``, at most
  100 characters, not ``.`` or ``..``.
- :class:`TableRef`: a table name with an optional schema, parsed from ``"ax.INVENTTABLE"``
  or ``"INVENTTABLE"``; in YAML it is written back as the same string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENTIFIER_MAX = 128
TOPIC_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")
TOPIC_ID_MAX = 100


def check_identifier(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid SQL identifier, else raise ``ValueError`` saying why."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > IDENTIFIER_MAX:
        raise ValueError(f"{what} {value[:20]!r}... is {len(value)} characters long; the limit is {IDENTIFIER_MAX}")
    if not IDENTIFIER_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid SQL identifier: use letters, digits and '_', not starting with a digit"
        )
    return value


def check_topic_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it can be part of a Kafka topic name, else raise ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if len(value) > TOPIC_ID_MAX:
        raise ValueError(f"{what} {value[:20]!r}... is {len(value)} characters long; the limit is {TOPIC_ID_MAX}")
    if value in (".", "..") or not TOPIC_ID_RE.match(value):
        raise ValueError(
            f"{value!r} cannot be used in a Kafka topic name: use letters, digits, '.', '_' and '-' only"
        )
    return value


def _scalar_to_str(value: Any) -> Any:
    """YAML reads ``id: 1040`` as an int; ids are strings (booleans and floats are not coerced)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Identifier = Annotated[str, AfterValidator(check_identifier)]
"""A SQL identifier (table, schema or column name)."""

TopicId = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(check_topic_id)]
"""An id usable in a Kafka topic name (jobs, groups, channels, registers, schedules...)."""


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table, optionally schema-qualified: ``TableRef("ax", "INVENTTABLE")`` is ``ax.INVENTTABLE``.

    Equality is exact; use :meth:`key` for the case-insensitive identity SQL uses.
    """

    schema: str | None
    name: str

    def __post_init__(self) -> None:
        if self.schema is not None:
            check_identifier(self.schema, "schema")
        check_identifier(self.name, "table name")

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """Parse ``"schema.table"`` or ``"table"``; raise ``ValueError`` on anything else."""
        if not isinstance(text, str):
            raise ValueError(f"a table name must be a string like 'ax.INVENTTABLE', got {text!r}")
        parts = text.strip().split(".")
        if len(parts) == 1:
            return cls(None, parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise ValueError(f"{text!r} is not a table name: write 'TABLE' or 'schema.TABLE'")

    def with_default_schema(self, schema: str) -> TableRef:
        """This table, with ``schema`` filled in when none was given."""
        return self if self.schema is not None else TableRef(schema, self.name)

    def key(self, default_schema: str | None = None) -> tuple[str, str]:
        """Case-insensitive identity ``(schema, name)``; a missing schema becomes ``default_schema``."""
        return ((self.schema or default_schema or "").casefold(), self.name.casefold())

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def _coerce_table_ref(value: Any) -> TableRef:
    if isinstance(value, TableRef):
        return value
    return TableRef.parse(value)


TableRefField = Annotated[
    TableRef,
    PlainValidator(_coerce_table_ref),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$"}),
]
"""Pydantic field type for :class:`TableRef`: validated from ``"schema.TABLE"``, dumped as that string."""
