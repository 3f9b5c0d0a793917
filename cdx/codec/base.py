"""The ``Codec`` base class: the half of the interface every wire format shares (see ``cdx.codec.codec``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from cdx.codec.errors import DecodeError
from cdx.codec.schema import AvroSchema

SchemaLike = AvroSchema | Mapping[str, Any] | str


class Codec(ABC):
    """A wire format: key/value dicts <-> Kafka record bytes (see ``cdx.codec.codec``). Subclasses give the
    ``_encode``/``_decode`` of one datum and ``writer_schema``; the rest is shared: a ``None`` value is a
    tombstone (``None`` both ways), a missing key a ``DecodeError``."""

    @abstractmethod
    def _encode(self, topic: str, schema: SchemaLike, datum: Mapping[str, Any], is_key: bool) -> bytes: ...

    @abstractmethod
    def _decode(self, topic: str, data: bytes, reader: SchemaLike | None, is_key: bool) -> Any: ...

    @abstractmethod
    def writer_schema(self, topic: str, data: bytes, is_key: bool = False) -> AvroSchema: ...

    def encode_key(self, topic: str, schema: SchemaLike, key: Mapping[str, Any]) -> bytes:
        return self._encode(topic, schema, key, True)

    def encode_value(self, topic: str, schema: SchemaLike, value: Mapping[str, Any] | None) -> bytes | None:
        return None if value is None else self._encode(topic, schema, value, False)

    def decode_key(self, topic: str, data: bytes, reader: SchemaLike | None = None) -> dict[str, Any]:
        if data is None:
            raise DecodeError(f"record on {topic} has no key")
        out: dict[str, Any] = self._decode(topic, data, reader, True)
        return out

    def decode_value(self, topic: str, data: bytes | None,
                     reader: SchemaLike | None = None) -> dict[str, Any] | None:
        out: dict[str, Any] | None = None if data is None else self._decode(topic, data, reader, False)
        return out
