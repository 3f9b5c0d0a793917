"""Errors raised by the record codec, typed by what the caller should do (see ``cdx.errors``)."""

from __future__ import annotations

from cdx.errors import FatalError, RetriableError, SkippableError


class EncodeError(SkippableError):
    """A row or key does not fit its schema (wrong type, decimal too wide, bad UUID...)."""


class DecodeError(SkippableError):
    """A record's bytes cannot be decoded (wrong magic byte, truncated body, incompatible reader)."""


class UnknownSchemaError(DecodeError):
    """A record names a writer schema (fingerprint or registry id) that cannot be found anywhere."""

    def __init__(self, reason: str, schema_ref: str) -> None:
        super().__init__(reason)
        self.schema_ref = schema_ref


class SchemaError(FatalError):
    """A schema or column description is invalid or uses a type cdx does not support."""


class SchemaConflictError(FatalError):
    """Two different schemas share one fingerprint.

    The Parsing Canonical Form, and so the fingerprint, ignores logical-type attributes (decimal
    precision/scale, date vs int, ...) and cdx's own attributes (``cdx.length``). Two schemas that
    differ only there would decode each other's records wrongly, so the store refuses the second
    one. ``SchemaStore.register_table`` avoids this by moving the new schema to the next generation.
    """


class SchemaStoreUnavailable(RetriableError):
    """The schemas topic (or the Schema Registry) could not be read or written in time."""
