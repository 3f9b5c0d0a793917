"""What the sink commands (``dlq replay``, ``replay``, ``channel resync``) share with a running sink:
the Kafka client configuration, the codec (schema store of the topology) and the dead-letter producer.
Everything is created on first use; ``close()`` flushes the producer."""

from __future__ import annotations

from functools import cached_property

from cdx.codec import Codec, SchemaStore, make_codec
from cdx.connectors.sink.dlq import KafkaDeadLetters
from cdx.connectors.sink.spec import SinkSpec
from cdx.dialects import Connection, get_dialect
from cdx.dialects.reach import naming
from cdx.errors import RetriableError
from cdx.kafka.admin import TopicSpec, ensure_topics
from cdx.kafka.config import client_config, producer_config
from cdx.topics import dlq_topic, schemas_topic
from cdx.topology.root import Topology

DLQ_CONFIG = {"retention.ms": "-1"}
"""Dead letters are kept until an operator deals with them."""


class SinkTools:
    def __init__(self, topology: Topology) -> None:
        k = topology.kafka
        self.topology = topology
        self.config = client_config(k.bootstrap_servers, k.security)
        self.dlq_topic = dlq_topic(k.topic_prefix)

    @cached_property
    def codec(self) -> Codec:
        k = self.topology.kafka
        store = SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix), consumer_config=dict(self.config))
        return make_codec(k.codec_config(), store=store)

    @cached_property
    def dead_letters(self) -> KafkaDeadLetters:
        k = self.topology.kafka
        ensure_topics(self.config, [TopicSpec(self.dlq_topic, 1, k.replication_factor, DLQ_CONFIG)])
        return KafkaDeadLetters(producer_config(self.config), self.dlq_topic)

    def close(self) -> None:
        letters = self.__dict__.pop("dead_letters", None)
        if letters is not None:
            letters.close()


def open_database(spec: SinkSpec) -> Connection:
    """A connection to the sink's database; ``RetriableError`` naming it when it cannot be opened."""
    try:
        with naming(database_of(spec)):  # names the DSN already
            return get_dialect(spec.dialect).connect(spec.dsn)
    except RetriableError:
        raise
    except Exception as e:
        raise RetriableError(f"cannot open {database_of(spec)}: {type(e).__name__}: {e}") from e


def database_of(spec: SinkSpec) -> str:
    """How messages name a sink's database: ``the database of channel s1 (dsn)``."""
    kind = "offline register" if spec.kind == "offline" else "channel"
    return f"the database of {kind} {spec.owner_id} ({spec.redacted_dsn()})"
