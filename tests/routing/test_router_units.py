"""Router pieces without Kafka: credentials mapping, state records, restart decisions."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from cdx.errors import ConfigError
from cdx.streams.router import Router
from cdx.streams.security import faust_credentials
from cdx.streams.state import RouterState, Start
from cdx.topics import router_state_topic as state_topic
from cdx.topology import load_topology
from tests.routing.helpers import topology_text


def test_security_mapping() -> None:
    assert faust_credentials({}) is None
    sasl = faust_credentials({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                              "sasl.username": "u", "sasl.password": "p"})
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "u" and sasl.mechanism.value == "SCRAM-SHA-512"
    tls = faust_credentials({"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"})
    assert isinstance(tls, faust.SSLCredentials)
    with pytest.raises(ConfigError):
        faust_credentials({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"})
    with pytest.raises(ConfigError):
        faust_credentials({"sasl.kerberos.service.name": "kafka"})


def test_state_records() -> None:
    state = RouterState({}, state_topic("cdx"), producer=None)  # type: ignore[arg-type]
    assert state.topic == "cdx._router_state"
    state._apply(b'["g", "cdx.hq.dbo.T", 2]', b'{"start": 17, "done": false}')
    state._apply(b'["h", "cdx.hq.dbo.T", 2]', b'{"start": 0, "done": true}')
    assert state.get("g", "cdx.hq.dbo.T", 2) == Start(17, False)
    assert state.keys_for([("h", "cdx.hq.dbo.T")]) == [("h", "cdx.hq.dbo.T", 2)]
    state._apply(b'["g", "cdx.hq.dbo.T", 2]', None)
    assert state.get("g", "cdx.hq.dbo.T", 2) is None


def test_what_needs_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(topology_text("127.0.0.1:1", "rt", tmp_path))
    topo = load_topology(path)
    router = Router(topo)
    subscribed = router.plan.source_topics
    path.write_text(topology_text("127.0.0.1:1", "rt", tmp_path, extra_group="x"))
    assert router.needs_restart(load_topology(path), subscribed) is None  # a group: applied in place
    path.write_text(topology_text("127.0.0.1:1", "rt", tmp_path, notes=True))
    assert "rt.hq.dbo.NOTES" in (router.needs_restart(load_topology(path), subscribed) or "")
    path.write_text(topology_text("127.0.0.1:2", "rt", tmp_path))
    assert router.needs_restart(load_topology(path), subscribed) == "the kafka section changed"


def test_a_refused_record_replaces_the_producer_before_the_next_batch() -> None:
    """A failed delivery (not a purge) marks the producer stale; ``_between_batches`` replaces it once."""
    from confluent_kafka import KafkaError

    from cdx.streams.engine import Engine

    engine = Engine.__new__(Engine)  # no Kafka: only the delivery callback and the between-batches hook
    engine.stale_producer, engine.reload_requested, engine._next_check = False, False, float("inf")
    engine.txn = type("Txn", (), {"lost": None})()
    replaced: list[int] = []

    def replace() -> None:
        replaced.append(1)
        engine.stale_producer = False

    engine.replace_producer = replace  # type: ignore[method-assign]
    engine._delivery_failed(KafkaError(KafkaError._PURGE_QUEUE), None)  # type: ignore[arg-type]
    engine._delivery_failed(KafkaError(KafkaError._PURGE_INFLIGHT), None)  # type: ignore[arg-type]
    engine._between_batches()
    assert not replaced
    engine._delivery_failed(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)  # type: ignore[arg-type]
    engine._between_batches()
    engine._between_batches()
    assert replaced == [1]
