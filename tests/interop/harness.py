"""Real Kafka Connect (standalone, from Maven Central jars) and a logical-replication PostgreSQL for the
interop tests, plus cdx role processes. Nothing here is mocked: Connect runs Debezium's own connectors.

- ``connect_classpath()``: ``mvn dependency:copy-dependencies`` over ``tests/interop/pom.xml`` into
  ``$CDX_STATE_DIR/interop/connect-lib`` (own local repository ``$CDX_STATE_DIR/m2``, every repository
  mirrored to Central by ``settings.xml``), once;
- ``Connect``: a standalone worker (JsonConverter with schemas, heap 1 GiB) running the given connectors;
- ``logical_postgres()``: a private PostgreSQL cluster with ``wal_level=logical`` on ``$CDX_PG_PORT + 1``
  (Debezium's PostgreSQL source needs it; the shared test server keeps its settings);
- ``spawn_cdx(...)``: a cdx command as a separate process, logging to a file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cdx.infra.paths import state_dir

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONNECT_HEAP = "-Xmx1g"


def maven(pom: Path, out: Path, *goals: str, java_home: str | None = None, timeout: float = 1800) -> None:
    """Run Maven on ``pom`` with this worktree's own local repository; raise with the log tail on failure."""
    log = out.parent / f"{out.name}.mvn.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if java_home:
        env["JAVA_HOME"] = java_home
    argv = ["mvn", "-B", "-q", "-s", str(HERE / "settings.xml"), f"-Dmaven.repo.local={state_dir() / 'm2'}",
            "-f", str(pom), *goals]
    with open(log, "wb") as f:
        rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, env=env).returncode
    if rc != 0:
        raise RuntimeError(f"Maven failed ({' '.join(goals)}), see {log}:\n{log.read_text()[-3000:]}")


def connect_classpath() -> str:
    lib = state_dir() / "interop" / "connect-lib"
    stamp = lib / ".complete"
    if not stamp.exists():
        if lib.exists():
            shutil.rmtree(lib)
        maven(HERE / "pom.xml", lib, "dependency:copy-dependencies", "-DincludeScope=runtime",
              f"-DoutputDirectory={lib}")
        stamp.touch()
    return f"{lib}/*"


def _props(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


class Connect:
    """A Kafka Connect standalone worker running ``connectors`` (name -> properties). Stop with ``stop()``."""

    def __init__(self, workdir: Path, bootstrap: str, connectors: Mapping[str, Mapping[str, Any]],
                 *, rest_port: int | None = None, converter: Mapping[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "connect.log"
        conv = dict(converter or {
            "key.converter": "org.apache.kafka.connect.json.JsonConverter", "key.converter.schemas.enable": "true",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true"})
        worker = _props(workdir / "worker.properties", {
            "bootstrap.servers": bootstrap, **conv,
            "offset.storage.file.filename": workdir / "offsets.dat", "offset.flush.interval.ms": 1000,
            "listeners": f"http://127.0.0.1:{rest_port or free_port()}", "plugin.discovery": "only_scan",
            "consumer.max.poll.records": 4096, "consumer.auto.offset.reset": "earliest"})
        files = [str(_props(workdir / f"{name}.properties", {"name": name, **props}))
                 for name, props in connectors.items()]
        log4j = _props(workdir / "log4j2.properties", {
            "rootLogger.level": "INFO", "rootLogger.appenderRef.f.ref": "F", "appender.f.type": "File",
            "appender.f.name": "F", "appender.f.fileName": self.log, "appender.f.layout.type": "PatternLayout",
            "appender.f.layout.pattern": "%d %p %c{1}: %m%n"})
        argv = ["java", CONNECT_HEAP, f"-Dlog4j2.configurationFile={log4j}", "-cp", connect_classpath(),
                "org.apache.kafka.connect.cli.ConnectStandalone", str(worker), *files]
        out = open(workdir / "connect.out", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, n: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-n:])

    def errors(self) -> list[str]:
        """Lines of the worker log that report a failed task (the test fails on them)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "Task threw an uncaught" in line or (" ERROR " in line
                and "WorkerSinkTask" in line)]

    def alive(self) -> bool:
        """The worker runs and no task of it has died."""
        return self.proc.poll() is None and not self.errors()

    def stop(self) -> None:
        stop(self.proc, timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_cdx(tmp: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "cdx.cli.main", *args], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=ROOT)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_until(check: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] | None = None,
               alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and not alive():
            raise AssertionError(f"{what}: a process it needs exited\n{on_fail() if on_fail else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s\n{on_fail() if on_fail else ''}")
        time.sleep(1.0)


def logical_postgres() -> str:
    """DSN (database ``postgres``) of the private ``wal_level=logical`` cluster, started if needed."""
    from cdx.infra.postgres import launcher as pg

    port = int(os.environ.get("CDX_PG_PORT", pg.DEFAULT_PORT)) + 1
    dsn = pg.private_dsn(port)
    if pg.answers(dsn):
        return dsn
    bindir = pg._bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are missing (make services installs them)")
    root = state_dir() / "interop" / "pg-logical"
    data, run, log = root / "data", root / "run", root / "server.log"
    for path in (root, run):
        pg._prepare_dir(path)
    if not (data / "PG_VERSION").exists():
        pg._prepare_dir(data)
        subprocess.run(pg._as_owner([str(bindir / "initdb"), "-D", str(data), "-U", pg.SUPERUSER, "--auth=trust",
                                     "-E", "UTF8", "--locale=C.UTF-8"]), check=True, stdout=subprocess.DEVNULL)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{run}'\n"
                       "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\n"
                       "shared_buffers = 64MB\n")
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, pg.SUPERUSER, pg.SUPERUSER)
    subprocess.run(pg._as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                 "start"]), check=True, stdout=subprocess.DEVNULL)
    return dsn


def stop_logical_postgres() -> None:
    from cdx.infra.postgres import launcher as pg

    bindir = pg._bindir()
    data = state_dir() / "interop" / "pg-logical" / "data"
    if bindir is not None and (data / "postmaster.pid").exists():
        subprocess.run(pg._as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=False, stdout=subprocess.DEVNULL)
