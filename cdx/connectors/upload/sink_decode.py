"""The HQ upload sink's ``decode``: one upload record -> one HQ row (:class:`Item`), or :class:`Unusable`.

The value alone says it all (``source.table`` and ``source.change_version`` repeat the key's table and
counter, so the key is not decoded). The channel a row belongs to is the topic it came on: a record
naming another channel is refused. A record whose writer schema is not readable yet is retried
(``RetriableError``) for ``unknown_schema_wait`` seconds, then dead-lettered. Decoding has no effect
outside this object, so the loop may decode a record again after a rewind.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from cdx.codec import UnknownSchemaError
from cdx.connectors.upload.records import EXTENSION_HEADER, SUBJOB_HEADER
from cdx.connectors.upload.sink_catalog import Catalog, HqTable
from cdx.dialects import LogicalType
from cdx.errors import RetriableError, SkippableError
from cdx.topology import DATAAREAID

log = logging.getLogger("cdx.upload.sink")
_MAX_WAITING = 10_000
"""Records remembered as waiting for their schema at most (then forgotten: they wait again)."""


@dataclass
class Item:
    """One upload record as the row to insert into ``table``."""

    msg: Message
    channel: str
    table: HqTable
    counter: int
    values: dict[str, Any]


class Unusable(SkippableError):
    """A record the sink cannot use, with what is known of it (for its dead letter)."""

    def __init__(self, reason: str, channel: str | None = None, table: str | None = None,
                 counter: int | None = None, row: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.channel, self.table, self.counter, self.row = channel, table, counter, row


def _text(v: str | bytes | None) -> str:
    if v is None:
        return ""
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _naive_utc(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


class Decoder:
    def __init__(self, catalog: Catalog, codec: Any, unknown_schema_wait: float) -> None:
        self.catalog, self.codec, self.unknown_schema_wait = catalog, codec, unknown_schema_wait
        self._unknown_since: dict[tuple[str, int | None, int | None], float] = {}
        self._warned: set[str] = set()

    def __call__(self, msg: Message) -> Item:
        topic = msg.topic() or ""
        channel = self.catalog.channels.get(topic)
        if channel is None:
            raise Unusable(f"topic {topic} is not the upload topic of a channel")
        env = self._envelope(msg, topic, channel)
        source = (env or {}).get("source") or {}
        table_name = f"{source.get('schema')}.{source.get('table')}" if source.get("schema") else \
            str(source.get("table", ""))
        counter = source.get("change_version")
        if env is None or env.get("op") != "c" or env.get("after") is None or not isinstance(counter, int):
            raise Unusable("not an upload record (needs op 'c' with 'after' and the counter in"
                           " source.change_version)", channel, table_name or None,
                           counter if isinstance(counter, int) else None)
        after: dict[str, Any] = env["after"]
        headers = dict(msg.headers() or [])
        table = self._table(headers, table_name)
        if table is None:
            raise Unusable(f"no upload subjob reads {table_name!r}", channel, table_name, counter)
        if str(source.get("name", channel)) != channel:
            raise Unusable(f"record names channel {source.get('name')!r} but came on channel {channel!r}'s topic",
                           channel, table_name, counter, after)
        absent = _text(headers.get(EXTENSION_HEADER)) == "absent"
        values = self._values(table, after, absent)
        if table.origin is not None:
            values[table.origin] = channel
        values.setdefault(table.counter, counter)
        missing = [k for k in table.key if values.get(k) is None]
        if missing:
            raise Unusable(f"missing key columns {missing} of HQ table {table.name}", channel, table_name, counter,
                           after)
        return Item(msg, channel, table, counter, values)

    def _envelope(self, msg: Message, topic: str, channel: str) -> Any:
        key = (topic, msg.partition(), msg.offset())
        try:
            env = self.codec.decode_value(topic, msg.value())
        except UnknownSchemaError as exc:
            # A schema committed by another producer can sit above the schemas topic's last stable
            # offset while some transaction there is open: wait for it before giving up on the record.
            # The first failure is remembered until the record decodes (a record given up on stays
            # given up on when a rewind or an isolation decodes it again).
            if len(self._unknown_since) >= _MAX_WAITING:
                self._unknown_since.clear()
            first = self._unknown_since.setdefault(key, time.monotonic())
            if time.monotonic() - first < self.unknown_schema_wait:
                raise RetriableError(f"a record on {topic} names a schema not readable yet: {exc}") from exc
            raise Unusable(f"undecodable record: {exc}", channel) from exc
        except SkippableError as exc:
            raise Unusable(f"undecodable record: {exc}", channel) from exc
        self._unknown_since.pop(key, None)
        return env

    def _table(self, headers: dict[str, Any], table_name: str) -> HqTable | None:
        """The subjob's HQ table: by the subjob header, else by the channel table the record names."""
        subjob = self.catalog.subjobs.get(_text(headers.get(SUBJOB_HEADER)).casefold()) or \
            self.catalog.by_source.get(table_name.casefold())
        return None if subjob is None else self.catalog.tables.get(subjob.id.casefold())

    def _values(self, table: HqTable, after: dict[str, Any], absent: bool) -> dict[str, Any]:
        key = (table.subjob.id, absent, tuple(after))
        plan = self.catalog.plans.get(key)
        if plan is None:
            plan = self.catalog.plans[key] = self._plan(table, list(after), absent)
        return {col: (_naive_utc(after[f]) if ts else after[f]) for f, col, ts in plan}

    def _plan(self, table: HqTable, fields: list[str], absent: bool) -> list[tuple[str, str, bool]]:
        """``(record field, HQ column, is a timestamp)`` for one record layout (cached per writer layout)."""
        out = []
        for name in fields:
            col = table.columns.get(name.casefold())
            if col is None:
                if name.casefold() != DATAAREAID.casefold() and f"{table.name}.{name}" not in self._warned:
                    self._warned.add(f"{table.name}.{name}")
                    log.warning("HQ table %s has no column %s: the uploaded value is dropped", table.name, name)
                continue
            if absent and name.casefold() in table.extension_fields:
                continue  # no extension row in the channel: HQ column defaults apply
            out.append((name, col.name, col.logical_type is LogicalType.TIMESTAMP))
        return out
