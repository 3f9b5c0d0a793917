"""``cdx topic tail TOPIC``: print a topic's records decoded, whatever their encoding.

For a person, the way ``kafka-avro-console-consumer`` shows Confluent's format: single-object
(schemas from the topology's schemas topic), Confluent registry wire format (the topology's
``schema_registry``), Kafka Connect JSON, and plain JSON or text topics (state, dead letters).
Follows the topic until interrupted, from its end, or from its start with ``--from-beginning``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import typer

from cdx.cli.app import console, err_console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load
from cdx.errors import ConfigError

app = typer.Typer(help="Look at cdx topics.", no_args_is_help=True)


@app.callback()
def topic() -> None:
    """Look at cdx topics."""


def _decoder(topology: Any) -> Any:
    from cdx.codec import SchemaStore, make_codec
    from cdx.codec.errors import DecodeError
    from cdx.codec.sniff import AnyDecoder
    from cdx.kafka.config import client_config
    from cdx.topics import schemas_topic

    k = topology.kafka
    config = client_config(k.bootstrap_servers, k.security)

    def make(encoding: str) -> Any:
        conf = {**k.codec_config(), "encoding": encoding}
        if encoding == "avro-registry" and "schema_registry.url" not in conf:
            raise DecodeError("record in the Confluent registry wire format, but the topology has no"
                              " schema_registry: add kafka.schema_registry.url to decode it")
        store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=dict(config))
        return make_codec(conf, store=store)

    return config, AnyDecoder(make)


def _consumer(config: dict[str, Any], name: str, from_beginning: bool) -> Any:
    from confluent_kafka import Consumer, TopicPartition

    from cdx.kafka.admin import partitions_of

    parts = partitions_of(config, name)
    if not parts:
        raise ConfigError(f"topic {name!r} does not exist at {config['bootstrap.servers']}:"
                          " check the name (cdx topology validate lists every topic)")
    consumer = Consumer({**config, "group.id": f"cdx-tail-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    start = -2 if from_beginning else -1  # OFFSET_BEGINNING / OFFSET_END
    consumer.assign([TopicPartition(name, p, start) for p in parts])
    return consumer


def _line(msg: Any, key: Any, value: Any, encodings: tuple[str | None, str | None], as_json: bool) -> str:
    from cdx.codec.sniff import to_json

    ts_type, ts = msg.timestamp()
    record = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
              "timestamp": ts if ts_type else None, "encoding": encodings[1] or encodings[0],
              "key": to_json(key), "value": to_json(value)}
    if as_json:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    shown = "null (tombstone)" if value is None else json.dumps(record["value"], ensure_ascii=False)
    return f"{msg.partition()}@{msg.offset()} key={json.dumps(record['key'], ensure_ascii=False)} value={shown}"


@app.command("tail")
@user_errors
def tail(
    name: str = typer.Argument(..., metavar="TOPIC", help="Topic to read (any cdx topic)."),
    topology: Path | None = TOPOLOGY_OPTION,
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record, not the end."),
    key: str | None = typer.Option(None, "--key", "-k", help="Only records with this key: the value of a one-column"
                                                              " key, COL=V[,COL=V], or a JSON object."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record (topic, partition, offset,"
                                                      " timestamp, encoding, key, value)."),
    max_messages: int = typer.Option(0, "--max-messages", "-n", min=0, help="Stop after this many records (0: never)."),
    idle_exit: float = typer.Option(0.0, "--idle-exit", min=0.0, help="Stop after this many seconds without a record"
                                                             " (0: follow until interrupted)."),
) -> None:
    """Print TOPIC's records decoded (all cdx encodings), following it like `tail -f`."""
    from cdx.codec.errors import DecodeError, SchemaStoreUnavailable
    from cdx.codec.sniff import key_matches

    config, decoder = _decoder(load(topology))
    consumer = _consumer(config, name, from_beginning)
    shown, last = 0, time.monotonic()
    try:
        while not max_messages or shown < max_messages:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if idle_exit and time.monotonic() - last > idle_exit:
                    break
                continue
            last = time.monotonic()
            try:
                kenc, k = decoder.decode(name, msg.key(), is_key=True)
                if key is not None and not key_matches(k, key):
                    continue
                venc, v = decoder.decode(name, msg.value())
            except (DecodeError, SchemaStoreUnavailable) as e:
                err_console.print(f"{msg.partition()}@{msg.offset()}: cannot decode: {e}", markup=False)
                continue
            console.print(_line(msg, k, v, (kenc, venc), as_json), markup=False, highlight=False, soft_wrap=True)
            shown += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        sys.stdout.flush()
