"""Kafka Connect standalone with Debezium's PostgreSQL source and JDBC sink, for the peer benchmark.

- ``ensure_jars()`` resolves ``pom.xml`` (Debezium, Connect, Hibernate; versions pinned there) with Maven
  into ``<state>/debezium/jars-<debezium version>`` once, through ``settings.xml`` (every repository
  mirrored to Central); later calls download nothing.
- ``Peer`` writes the worker and the two connector configurations into a run folder, starts
  ``ConnectStandalone`` (heap 1 GiB; its own session, pid file, log), waits until both connectors'
  tasks run, and stops it. ``drop_slot`` removes the replication slot and publication the source
  created, so a finished run retains no WAL.

The peer is configured as a retail IT team would: JsonConverter with schemas, pgoutput, precise decimals,
upserts by record key, deletes enabled, batches of 4,096, topics of 3 partitions like cdx's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cdx.infra import process
from cdx.infra.paths import state_dir

HERE = Path(__file__).resolve().parent
POM, SETTINGS, LOG4J = HERE / "pom.xml", HERE / "settings.xml", HERE / "log4j2.properties"
HEAP = "1g"
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the worker's REST API: never via a proxy


class PeerError(RuntimeError):
    """The peer could not be provided; the message says why and where to look."""


def debezium_version() -> str:
    match = re.search(r"<debezium.version>([^<]+)</debezium.version>", POM.read_text())
    if not match:
        raise PeerError(f"{POM}: no <debezium.version> property")
    return match.group(1)


def ensure_jars() -> Path:
    """Resolve the peer's jars once (Maven Central); return the folder holding them."""
    target = state_dir() / "debezium" / f"jars-{debezium_version()}"
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PeerError("Maven (mvn) is needed to fetch Debezium and Kafka Connect: apt-get install -y maven")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"resolving Debezium {debezium_version()} + Kafka Connect jars from Maven Central into {target} ...",
          file=sys.stderr)
    result = subprocess.run([mvn, "-B", "-q", "-s", str(SETTINGS), "-f", str(POM), "dependency:copy-dependencies",
                             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PeerError(f"mvn failed to resolve the peer's jars:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    marker.write_text(debezium_version())
    return target


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL database as Connect sees it."""

    host: str
    port: int
    user: str
    dbname: str

    @classmethod
    def from_dsn(cls, dsn: str) -> PgTarget:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(dsn)
        return cls(str(info.get("host", "127.0.0.1")), int(info.get("port", 5432)), str(info.get("user", "postgres")),
                   str(info["dbname"]))

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}"


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


@dataclass
class Peer:
    """One Connect standalone worker: the Debezium source of ``hq`` tables ``tables`` and the JDBC sink into
    ``channel``, topics ``<prefix>.<schema>.<table>``, REST on ``rest_port``, files under ``home``."""

    home: Path
    bootstrap: str
    hq: PgTarget
    channel: PgTarget
    tables: tuple[str, ...]
    prefix: str
    rest_port: int

    @property
    def slot(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", f"{self.prefix}_slot".lower())

    @property
    def publication(self) -> str:
        return re.sub(r"[^a-z0-9_]", "_", f"{self.prefix}_pub".lower())

    @property
    def topics(self) -> list[str]:
        return [f"{self.prefix}.{t}" for t in self.tables]

    @property
    def pid_file(self) -> Path:
        return self.home / "connect.pid"

    @property
    def log(self) -> Path:
        return self.home / "connect.log"

    def pid(self) -> int | None:
        return process.read_pid(self.pid_file)

    def worker(self) -> dict[str, object]:
        return {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true", "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": self.home / "offsets.dat", "offset.flush.interval.ms": 10000,
            "listeners": f"http://127.0.0.1:{self.rest_port}",
            "consumer.max.poll.records": 4096,
            "plugin.discovery": "only_scan",
        }

    def source(self) -> dict[str, object]:
        return {
            "name": "peer-source", "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": 1, "database.hostname": self.hq.host, "database.port": self.hq.port,
            "database.user": self.hq.user, "database.password": "", "database.dbname": self.hq.dbname,
            "topic.prefix": self.prefix, "plugin.name": "pgoutput", "slot.name": self.slot,
            "publication.name": self.publication, "publication.autocreate.mode": "filtered",
            "table.include.list": ",".join(self.tables), "snapshot.mode": "no_data",
            "max.batch.size": 4096, "max.queue.size": 16384, "decimal.handling.mode": "precise",
            "topic.creation.default.replication.factor": 1, "topic.creation.default.partitions": 3,
        }

    def sink(self) -> dict[str, object]:
        return {
            "name": "peer-sink", "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
            "tasks.max": 1, "topics": ",".join(self.topics), "connection.url": self.channel.jdbc_url,
            "connection.username": self.channel.user, "connection.password": "",
            "insert.mode": "upsert", "primary.key.mode": "record_key", "delete.enabled": "true",
            "schema.evolution": "basic", "batch.size": 4096, "quote.identifiers": "true",
            "collection.name.format": "${source.table}",
        }

    def start(self, jars: Path) -> int:
        """Start the worker (no-op when it runs); return its pid."""
        running = self.pid()
        if running is not None:
            return running
        java = shutil.which("java")
        if java is None:
            raise PeerError("Java 17 is needed to run Kafka Connect: apt-get install -y openjdk-17-jre-headless")
        self.home.mkdir(parents=True, exist_ok=True)
        files = []
        for name, values in (("worker", self.worker()), ("source", self.source()), ("sink", self.sink())):
            path = self.home / f"{name}.properties"
            path.write_text(_properties(values))
            files.append(str(path))
        argv = [java, f"-Xmx{HEAP}", f"-Xms{HEAP}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{jars}/*",
                "org.apache.kafka.connect.cli.ConnectStandalone", *files]
        return process.spawn(argv, log_file=self.log, pid_file=self.pid_file)

    def status(self) -> dict[str, str]:
        """``{connector: state of its task(s)}``; empty while the REST API does not answer."""
        out = {}
        for name in ("peer-source", "peer-sink"):
            try:
                with _LOCAL.open(f"http://127.0.0.1:{self.rest_port}/connectors/{name}/status", timeout=2) as resp:
                    body = json.loads(resp.read())
            except (OSError, ValueError):
                return {}
            tasks = body.get("tasks") or [{"state": "NO TASK"}]
            out[name] = ",".join(str(t.get("state")) for t in tasks)
        return out

    def wait_running(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise PeerError(f"Kafka Connect exited during start; see {self.log}")
            last = self.status()
            if last and all(state == "RUNNING" for state in last.values()):
                return
            if any("FAILED" in state for state in last.values()):
                raise PeerError(f"a peer connector failed ({last}); see {self.log}")
            time.sleep(0.5)
        raise PeerError(f"Kafka Connect connectors not running within {timeout:.0f}s ({last}); see {self.log}")

    def failed(self) -> str:
        """Why the peer is not healthy ('' when it is)."""
        if self.pid() is None:
            return "Kafka Connect exited"
        bad = {k: v for k, v in self.status().items() if v != "RUNNING"}
        return f"connector tasks not running: {bad}" if bad else ""

    def stop(self) -> None:
        process.stop(self.pid_file, timeout=30)


def drop_slot(admin_dsn: str, slot: str, hq_dsn: str, publication: str) -> None:
    """Remove the source's replication slot (an inactive slot retains WAL for ever) and publication."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for _ in range(50):
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
            if row is None:
                break
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            time.sleep(0.2)
    try:
        with psycopg.connect(hq_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))
    except psycopg.OperationalError:
        pass  # the database is gone already
