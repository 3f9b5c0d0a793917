"""Values passed through unchanged where the projection is the identity (single-object encoding).

A routed value is the source envelope plus ``target``, ``subjob``, ``position`` and (when the
routed schema has it) ``filter`` appended as the last fields (``cdx.routed``), and Avro binary
carries no field names. So when a subjob keeps every
HQ column in writer order (renames allowed), the routed body is the source body followed by the
encoded routing fields, and the routed key body is the source key body: no decode-encode round
trip. ``Splicer.encode`` proves this per (writer schemas, routed schemas, source topic) on the first
record: it encodes that record through the codec as usual (which also registers and publishes the
routed schemas in the open transaction) and keeps splicing only if the spliced bytes are equal.
``reset()`` after an aborted transaction, so the schemas are published again with the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdx.codec.binary import avro_long, avro_string
from cdx.codec.single_object import HEADER_SIZE
from cdx.streams.routing import Route, SourceRecord


def routing_tail(value: dict[str, Any]) -> bytes:
    """The encoding of the fields after ``position``: ``filter`` (a union null | {value: null | string})."""
    if "filter" not in value:
        return b""
    flt = value["filter"]
    if flt is None:
        return b"\x00"
    v = flt.get("value")
    return b"\x02" + (b"\x00" if v is None else b"\x02" + avro_string(str(v)))


class Splicer:
    def __init__(self) -> None:
        self._plans: dict[Any, tuple[bytes, bytes, bytes] | None] = {}

    def reset(self) -> None:
        self._plans.clear()

    def encode(self, record: SourceRecord, r: Route, raw_key: bytes, raw_value: bytes,
               encode: Callable[[], tuple[bytes, bytes | None]]) -> tuple[bytes, bytes | None]:
        """(key bytes, value bytes) of the routed upsert ``r`` of ``record`` (``encode``: the codec path)."""
        ident = (record.schema_id, r.schemas.value.fingerprint, record.topic)
        pos = record.position
        if ident not in self._plans:
            kb, vb = encode()
            assert r.value is not None
            fixed = (avro_string(r.value["target"]["schema"]) + avro_string(r.value["target"]["table"])
                     + avro_string(r.value["subjob"]) + avro_string(pos.topic))
            kh, vh = kb[:HEADER_SIZE], (vb or b"")[:HEADER_SIZE]
            spliced = (kh + raw_key[HEADER_SIZE:], vh + raw_value[HEADER_SIZE:] + fixed + avro_long(pos.partition)
                       + avro_long(pos.offset) + routing_tail(r.value))
            self._plans[ident] = (kh, vh, fixed) if spliced == (kb, vb) else None
            return kb, vb
        plan = self._plans[ident]
        if plan is None:
            return encode()
        kh, vh, fixed = plan
        assert r.value is not None
        return (kh + raw_key[HEADER_SIZE:], vh + raw_value[HEADER_SIZE:] + fixed + avro_long(pos.partition)
                + avro_long(pos.offset) + routing_tail(r.value))
