"""Group-topic records decoded for a sink: the routed change plus its table's shape.

A ``Shape`` is what the writer schemas say about the target table (channel column names in row
order, Avro field names, key columns in key order, column types for DDL); it is built once per
(key schema, value schema) pair. Decoding never touches the channel database.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from cdx.codec import AvroSchema, Codec, Column, LogicalType, SingleObjectCodec
from cdx.codec.binary import read_body
from cdx.codec.errors import UnknownSchemaError
from cdx.codec.fastread import Reader, compile_reader
from cdx.codec.single_object import HEADER_SIZE, MAGIC, is_single_object
from cdx.connectors.sink.fastrecords import SOURCE_KEPT, routed_reader
from cdx.errors import CdxError, RetriableError
from cdx.routed import RoutedChange, columns_of, parse_tombstone, parse_value


@dataclass(frozen=True, eq=False)
class Shape:
    """One target table as a writer schema describes it."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    key_fields: tuple[str, ...]

    def __post_init__(self) -> None:
        by_field = {c.field: c for c in self.columns}
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "fields", tuple(c.field for c in self.columns))
        object.__setattr__(self, "key_names", tuple(by_field[f].name for f in self.key_fields))
        object.__setattr__(self, "timestamps", frozenset(
            i for i, c in enumerate(self.columns) if c.type is LogicalType.TIMESTAMP))
        object.__setattr__(self, "by_casefold", {c.name.casefold(): c.field for c in self.columns})
        object.__setattr__(self, "target", f"{self.schema}.{self.table}")
        object.__setattr__(self, "key_timestamps",
                           any(by_field[f].type is LogicalType.TIMESTAMP for f in self.key_fields))

    names: tuple[str, ...] = field(init=False)
    """Channel column names, row order."""
    fields: tuple[str, ...] = field(init=False)
    """Avro field names (row-dict keys), row order."""
    key_names: tuple[str, ...] = field(init=False)
    """Channel primary-key column names, key order."""
    timestamps: frozenset[int] = field(init=False)
    by_casefold: dict[str, str] = field(init=False)
    target: str = field(init=False)
    """``schema.table`` (the name stored with watermarks)."""
    key_timestamps: bool = field(init=False)

    def row_values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row as a tuple in ``names`` order; timestamps as naive UTC (the dialects' convention)."""
        if not self.timestamps:
            return tuple(map(row.get, self.fields))
        values = list(map(row.get, self.fields))
        for i in self.timestamps:
            v = values[i]
            if isinstance(v, dt.datetime) and v.tzinfo is not None:  # fastavro's are in UTC already
                values[i] = v.replace(tzinfo=None) if v.tzinfo is dt.UTC else v.astimezone(dt.UTC).replace(tzinfo=None)
        return tuple(values)

    def key_values(self, key: dict[str, Any]) -> tuple[Any, ...]:
        values = tuple(map(key.__getitem__, self.key_fields))
        if self.key_timestamps:
            values = tuple([v.astimezone(dt.UTC).replace(tzinfo=None)
                            if isinstance(v, dt.datetime) and v.tzinfo is not None else v for v in values])
        return values


@dataclass(slots=True)
class Record:
    """One consumed group-topic record.

    ``change`` is None for a tombstone without routing headers (``value is None``) and for a record
    that could not be decoded (``error`` says why: it goes to the dead-letter topic). A routed
    tombstone (``cdx.routed.tombstone_headers``) is the delete of its key (``tombstone`` True):
    after its delete it is a re-send the watermark skips; alone (compaction removed the delete)
    it deletes the row. ``timestamp`` (Kafka, ms) and
    ``headers`` are kept so a dead letter carries the record exactly as it was.
    """

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    change: RoutedChange | None = None
    shape: Shape | None = None
    error: str | None = None
    timestamp: int = 0
    headers: list[tuple[str, bytes]] | None = None
    tombstone: bool = False
    reroute: str | None = None
    """The re-route mark (header ``cdx.reroute``, ``cdx.streams.reroute``) of a re-routed record, else None."""
    key_values: tuple[Any, ...] | None = None
    """``shape.key_values(change.key)`` when the decoder built it already (its compiled routed reader), else None."""
    row_values: tuple[Any, ...] | None = None
    """``shape.row_values(change.row)`` of an upsert when the decoder built it already, else None."""


def decode_message(decoder: Decoder, msg: Any) -> Record:
    """A consumed confluent-kafka message as a ``Record`` (timestamp and headers kept)."""
    ts_type, ts = msg.timestamp()
    return decoder.decode(msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                          timestamp=ts if ts_type and ts and ts > 0 else 0, headers=msg.headers() or None)


UNKNOWN_SCHEMA_PATIENCE_S = 300.0
"""How long an unknown writer schema is retried before its record is dead-lettered."""


class Decoder:
    """Decodes one group topic's records with ``codec``; caches shapes per writer-schema pair.

    With single-object encoding the 10-byte headers name the writer schemas, so a known pair
    skips the schema lookups, and the key values are taken from the decoded value (a routed
    value carries the key: ``after`` for upserts, ``before`` for deletes, see ``cdx.routed``)
    instead of decoding the key a second time; with ``SingleObjectCodec`` the value body is then read
    with the cached writer schema's compiled reader (``cdx.codec.fastread``; ``read_body`` for a schema it
    does not compile) directly (no per-record fingerprint lookup).
    """

    def __init__(self, codec: Codec, topic: str) -> None:
        self.codec = codec
        self.topic = topic
        self._shapes: dict[tuple[AvroSchema, AvroSchema], Shape] = {}
        self._by_header: dict[tuple[bytes, bytes], tuple[Shape, Reader | None, Reader | None]] = {}
        """Checked header pair -> (shape, compiled value reader, compiled routed reader: ``fastrecords``)."""
        self._direct = type(codec) is SingleObjectCodec
        self._unknown_since: dict[str, float] = {}

    def decode(self, partition: int, offset: int, key: bytes | None, value: bytes | None, *,
               timestamp: int = 0, headers: list[tuple[str, bytes]] | None = None) -> Record:
        """Raises ``RetriableError`` (schema store unreachable); every other failure sets ``error``."""
        reroute = reroute_mark(headers) if headers else None
        if key is not None and value is not None:  # the common case first: a known pair, its routed reader
            known = self._by_header.get((key[:HEADER_SIZE], value[:HEADER_SIZE]))  # only checked headers are in it
            if known is not None and known[2] is not None:
                try:
                    got = known[2](value, HEADER_SIZE)
                except CdxError:
                    got = None  # the general path below says why
                if got is not None:  # (positional: a bootstrap makes millions)
                    return Record(partition, offset, key, value, got[0], known[0], None, timestamp, headers, False,
                                  reroute, got[1], got[2])
        rec = Record(partition, offset, key, value, timestamp=timestamp, headers=headers, reroute=reroute)
        if value is None:
            if key is not None and headers:
                self._tombstone(rec, key, headers)
            return rec
        try:
            if key is None:
                raise ValueError("record has no key")
            known = self._by_header.get((key[:HEADER_SIZE], value[:HEADER_SIZE]))
            if known is not None and known[1] is not None:
                decoded = known[1](value, HEADER_SIZE) or {}
                key_dict = _key_from_value(known[0], decoded)
                rec.change = parse_value(key_dict if key_dict is not None else self.codec.decode_key(self.topic, key),
                                         decoded)
                rec.shape = known[0]
                return rec
            header = (key[:HEADER_SIZE], value[:HEADER_SIZE]) if key[:2] == MAGIC and is_single_object(value) \
                and len(key) >= HEADER_SIZE else None
            known = self._by_header.get(header) if header is not None else None
            shape, read = known[:2] if known is not None else (None, None)
            decoded = (read(value, HEADER_SIZE) if read is not None
                       else self.codec.decode_value(self.topic, value)) or {}
            key_dict = _key_from_value(shape, decoded) if shape is not None else None
            change = parse_value(key_dict if key_dict is not None else self.codec.decode_key(self.topic, key), decoded)
            if shape is None:
                shape = self._shape(key, value, change)
                if header is not None:
                    vs = self.codec.writer_schema(self.topic, value) if self._direct else None
                    entry = _readers(vs, shape) if vs is not None else (shape, None, None)
                    self._by_header[header] = entry
                    shape = entry[0]  # the process-wide one: every record of this pair carries the same shape
            rec.shape = shape
            rec.change = change
        except RetriableError:
            raise
        except UnknownSchemaError as e:
            # A schema another producer committed can stay invisible to read_committed readers while a
            # transaction is open on the schemas topic: wait for it before calling the record poison.
            first = self._unknown_since.setdefault(str(e), time.monotonic())
            if time.monotonic() - first < UNKNOWN_SCHEMA_PATIENCE_S:
                raise RetriableError(f"{e}; retrying until the schemas topic shows it") from e
            rec.error = f"cannot decode: {type(e).__name__}: {e}"
        except (CdxError, KeyError, TypeError, ValueError) as e:
            rec.error = f"cannot decode: {type(e).__name__}: {e}"
        return rec

    def _tombstone(self, rec: Record, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        try:
            change = parse_tombstone(self.codec.decode_key(self.topic, key), headers)
            if change is None:
                return
            ks = self.codec.writer_schema(self.topic, key, is_key=True)
            shape = self._shapes.get((ks, ks))
            if shape is None:
                shape = self._shapes[(ks, ks)] = shape_of(change.schema, change.table, ks, ks)
            rec.change, rec.shape, rec.tombstone = change, shape, True
        except RetriableError:
            raise
        except (CdxError, KeyError, TypeError, ValueError) as e:
            rec.error = f"cannot decode a tombstone: {type(e).__name__}: {e}"

    def _shape(self, key: bytes, value: bytes, change: RoutedChange) -> Shape:
        ks = self.codec.writer_schema(self.topic, key, is_key=True)
        vs = self.codec.writer_schema(self.topic, value)
        shape = self._shapes.get((ks, vs))
        if shape is None:
            shape = shape_of(change.schema, change.table, ks, vs)
            self._shapes[(ks, vs)] = shape
        return shape


_READERS: dict[tuple[Any, ...], tuple[Shape, Reader, Reader | None]] = {}
"""Compiled readers shared by every channel's ``Decoder`` in the process: (writer schema text, the shape's
table and columns) -> (shape, value reader, routed reader). A sink host with 1,000 channels on one group
topic compiles each schema once, not once per channel (each compiled reader is tens of KiB of code)."""


def _readers(writer: AvroSchema, shape: Shape) -> tuple[Shape, Reader, Reader | None]:
    """``writer``'s compiled value and routed readers for ``shape`` (built once per process; a race builds
    the same readers twice, harmlessly)."""
    key = (writer.text, shape.schema, shape.table, shape.columns, shape.key_fields)
    got = _READERS.get(key)
    if got is None:
        got = _READERS[key] = (shape, _reader(writer), routed_reader(writer, shape))
    return got


def _reader(writer: AvroSchema) -> Reader:
    """``writer``'s compiled reader (``source`` projected to ``SOURCE_KEPT``), else one calling ``read_body``."""
    compiled = compile_reader(writer.to_dict(), SOURCE_KEPT)
    return compiled if compiled is not None else lambda data, start: read_body(memoryview(data)[start:], writer)


REROUTE_HEADER = "cdx.reroute"


def reroute_mark(headers: list[tuple[str, bytes]]) -> str | None:
    """The value of a record's ``cdx.reroute`` header (a decimal generation), None without one."""
    for name, value in headers:
        if name == REROUTE_HEADER and value:
            text = value.decode(errors="replace")
            return text if text.isdigit() else None
    return None


def _key_from_value(shape: Shape, value: dict[str, Any]) -> dict[str, Any] | None:
    row = value.get("before") if value.get("op") == "d" else value.get("after")
    if not isinstance(row, dict):
        return None
    try:
        return {f: row[f] for f in shape.key_fields}
    except KeyError:
        return None


def shape_of(schema: str, table: str, key_schema: AvroSchema, value_schema: AvroSchema) -> Shape:
    """The shape of ``schema.table`` from its routed key and value writer schemas."""
    columns = tuple(columns_of(value_schema, key_schema))
    key_fields = tuple(f["name"] for f in key_schema.to_dict()["fields"])
    return Shape(schema, table, columns, key_fields)
