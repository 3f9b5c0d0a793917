"""The ``avro-registry`` encoding against a real Schema Registry API server: Apicurio Registry (in-memory
storage, Confluent-compatible API ``/apis/ccompat/v7``) built from Maven Central by ``apicurio/pom.xml``.

Maven Central does not serve Apicurio Registry's own modules here (see the refusals in
``apicurio/pom.xml``; as of 2026-12-07 every version tried was refused), so this test skips with the
exact refusal until it can build; the registry codec is otherwise tested against confluent-kafka's
mock registry (``tests/codec/test_codec_wire.py``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from cdx.codec import Column, LogicalType, SourceInfo, TableSchemas, make_codec, make_envelope
from cdx.infra.paths import state_dir
from tests.interop.harness import HERE, free_port, maven, stop

pytestmark = [pytest.mark.integration, pytest.mark.interop]
JAVA_21 = "/usr/lib/jvm/temurin-25-jdk-amd64"  # Apicurio 3 needs Java 21+


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    out = state_dir() / "interop" / "apicurio"
    runner = HERE / "apicurio" / "target" / "quarkus-app" / "quarkus-run.jar"
    pom = HERE / "apicurio" / "pom.xml"
    refusal = out.parent / f"apicurio-refused-{hashlib.sha1(pom.read_bytes()).hexdigest()[:12]}.txt"
    if refusal.exists():  # this pom already failed to resolve: don't wait for Maven again
        pytest.skip(f"Apicurio Registry cannot be built from Maven Central here: {refusal.read_text()}")
    if not runner.exists():
        try:
            maven(pom, out, "package", "-DskipTests", java_home=JAVA_21)
        except RuntimeError as e:
            refused = [line for line in str(e).splitlines() if "Could not" in line or "could not be resolved" in line]
            refusal.write_text(refused[0][:1500] if refused else str(e)[-1500:])
            pytest.skip(f"Apicurio Registry cannot be built from Maven Central here: {refusal.read_text()}")
    port = free_port()
    log = open(out.parent / "apicurio.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([f"{JAVA_21}/bin/java", "-Xmx512m", f"-Dquarkus.http.port={port}",
                             "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2", "-jar", str(runner)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/subjects", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                raise AssertionError(f"Apicurio Registry did not answer at {url}") from None
            time.sleep(1)
    yield url
    stop(proc)


def test_registry_wire_format_round_trips_through_a_real_registry(registry_url: str) -> None:
    ts = TableSchemas.build("cdx.hq.dbo.T", [Column("ID", LogicalType.INT64, primary_key=True),
                                             Column("PRICE", LogicalType.DECIMAL, precision=10, scale=2),
                                             Column("AT", LogicalType.TIMESTAMP)])
    writer = make_codec({"encoding": "avro-registry", "schema_registry.url": registry_url})
    reader = make_codec({"encoding": "avro-registry", "schema_registry.url": registry_url})
    row = {"ID": 7, "PRICE": decimal.Decimal("1.25"), "AT": dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)}
    env = make_envelope("c", after=row, source=SourceInfo("cdx", "hq", "hq", "dbo", "T", 1, 1), ts_ms=1)
    key = writer.encode_key("cdx.hq.dbo.T", ts.key, {"ID": 7})
    value = writer.encode_value("cdx.hq.dbo.T", ts.value, env)
    assert key[0] == 0 and value is not None and value[0] == 0
    assert reader.decode_key("cdx.hq.dbo.T", key) == {"ID": 7}
    decoded = reader.decode_value("cdx.hq.dbo.T", value)
    assert decoded is not None and decoded["after"] == row
    assert reader.writer_schema("cdx.hq.dbo.T", value) == ts.value
