"""Avro binary bodies (no framing) with fastavro: write with one schema, read with writer + reader."""

from __future__ import annotations

import io
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from cdx.codec.errors import DecodeError, EncodeError
from cdx.codec.schema import AvroSchema


def write_body(schema: AvroSchema, datum: Any) -> bytes:
    """The Avro binary encoding of ``datum`` (normalized by ``schema.prepare`` first)."""
    if schema.prepare is not None:
        datum = schema.prepare(datum)
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema.parsed, datum)
    except EncodeError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        name = schema.name or schema.fingerprint_hex
        raise EncodeError(f"value does not fit schema {name}: {_explain(schema, datum, e)}") from None
    return buf.getvalue()


def avro_long(n: int) -> bytes:
    """Avro ``int``/``long``: zigzag, then base-128 varint (up to 4 bytes unrolled: the hot paths splice
    partitions, offsets and lengths into records byte by byte)."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x4000:
        return bytes((z,)) if z < 0x80 else bytes((z & 0x7F | 0x80, z >> 7))
    if z < 0x10000000:
        if z < 0x200000:
            return bytes((z & 0x7F | 0x80, (z >> 7) & 0x7F | 0x80, z >> 14))
        return bytes((z & 0x7F | 0x80, (z >> 7) & 0x7F | 0x80, (z >> 14) & 0x7F | 0x80, z >> 21))
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(s: str) -> bytes:
    """Avro ``string``: its UTF-8 length, then the bytes."""
    data = s.encode()
    return avro_long(len(data)) + data


def _explain(schema: AvroSchema, datum: Any, error: Exception) -> str:
    """fastavro's validator names the offending field; used on the error path only."""
    try:
        validate(datum, schema.parsed, raise_errors=True)
    except ValidationError as v:
        problems = [p for p in v.errors if not str(p).endswith("expected null")] or v.errors
        return "; ".join(str(p) for p in problems)
    except Exception as other:  # the validator itself failed on this datum: keep the encoder's words
        return f"{error} (validator: {other})"
    return str(error)


def read_body(body: bytes | memoryview, writer: AvroSchema, reader: AvroSchema | None = None) -> Any:
    """Decode an Avro binary body written with ``writer``; project onto ``reader`` if given.

    Avro schema resolution applies: fields the reader lacks are skipped, fields the writer lacks
    take the reader's default. Trailing bytes mean the writer schema is not the one used to write:
    that is an error, not silently ignored.
    """
    buf = io.BytesIO(body)
    resolved = None if reader is None or reader.identity == writer.identity else reader.parsed
    try:
        value = fastavro.schemaless_reader(buf, writer.parsed, resolved)
    except Exception as e:  # fastavro raises many kinds (EOFError, SchemaResolutionError, ...)
        raise DecodeError(f"cannot decode Avro body with writer {writer.fingerprint_hex}"
                          f"{' / reader ' + reader.fingerprint_hex if resolved is not None and reader else ''}:"
                          f" {type(e).__name__}: {e}") from None
    if buf.tell() != len(body):
        raise DecodeError(f"{len(body) - buf.tell()} trailing bytes after the Avro body"
                          f" (writer {writer.fingerprint_hex}): wrong writer schema?")
    return value
