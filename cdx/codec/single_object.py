"""Avro single-object encoding framing: ``C3 01`` + 8-byte little-endian fingerprint + body."""

from __future__ import annotations

from cdx.codec.errors import DecodeError

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
CONFLUENT_MAGIC = 0


def frame(fingerprint: bytes, body: bytes) -> bytes:
    """Prefix ``body`` with the single-object header for the schema whose fingerprint is given."""
    if len(fingerprint) != 8:
        raise ValueError(f"a CRC-64-AVRO fingerprint has 8 bytes, not {len(fingerprint)}")
    return MAGIC + fingerprint + body


def unframe(data: bytes) -> tuple[bytes, memoryview]:
    """Split a single-object-encoded record into (fingerprint, body)."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        if data[:1] == bytes([CONFLUENT_MAGIC]) and len(data) >= 5:
            raise DecodeError("record is in the Confluent Schema Registry wire format (magic byte 0),"
                              " not Avro single-object encoding: configure schema_registry.url to read it")
        raise DecodeError(f"not an Avro single-object encoded record (starts with {bytes(data[:4]).hex()!r},"
                          " expected 'c301')")
    return bytes(data[2:HEADER_SIZE]), memoryview(data)[HEADER_SIZE:]


def is_single_object(data: bytes | None) -> bool:
    return data is not None and len(data) >= HEADER_SIZE and data[:2] == MAGIC
