"""Helpers of the upload tests: topologies over the sample's upload subjobs, databases made with
:mod:`cdx.demo.retail_schema`, sales written with :mod:`cdx.demo.pos`, and per-channel
comparison of channel tables with HQ (count and checksum)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from cdx.codec import SchemaStore, make_codec
from cdx.demo.pos import write_sales
from cdx.demo.retail_schema import create_channel_upload_tables, create_hq_tables
from cdx.dialects import Connection, Dialect, connect, get_dialect
from cdx.kafka.config import client_config
from cdx.kafka.reading import read_to_end
from cdx.topics import dlq_topic, schemas_topic, upload_topic
from cdx.topology import Topology, load_topology
from cdx.verify import checksum, normalise

SQLITE = get_dialect("sqlite")
PG = get_dialect("postgresql")
RECIDS = 5637144576

HEADER_FIELDS = ["TRANSACTIONID", "STORE", "TERMINAL", "CHANNEL", "TYPE", "CUSTACCOUNT", "STAFF", "CURRENCY",
                 "GROSSAMOUNT", "NETAMOUNT", "TRANSDATE", "TRANSTIME", "REPLICATIONCOUNTERFROMORIGIN"]
LINE_FIELDS = ["TRANSACTIONID", "LINENUM", "STORE", "TERMINAL", "CHANNEL", "ITEMID", "QTY", "PRICE", "NETAMOUNT",
               "TAXAMOUNT", "DISCAMOUNT", "TRANSDATE", "REPLICATIONCOUNTERFROMORIGIN"]
EXT_FIELDS = ["CONTOSORETAILSEATNUMBER", "CONTOSORETAILSERVERSTAFFID"]


def pg_url(dsn: str) -> str:
    """A libpq key=value DSN as a ``postgresql://`` URL (the form topology files take)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    user = info.get("user", "postgres")
    return f"postgresql://{user}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"


def fresh_pg(admin_dsn: str, label: str) -> str:
    from cdx.infra.postgres import launcher

    return pg_url(launcher.create_database(admin_dsn, f"up_{label}_{uuid.uuid4().hex[:8]}"))


def _yaml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def make_topology(tmp: Path, bootstrap: str, hq_dsn: str, channels: Sequence[str], *,
                  registers: dict[str, list[str]] | None = None, channel_dsns: dict[str, str] | None = None,
                  override_target: bool = False, extension: bool = True, prefix: str | None = None,
                  encoding: str = "avro") -> Topology:
    """A topology with the sample's two upload subjobs (header with extension, lines) over ``channels``
    (SQLite files in ``tmp`` unless ``channel_dsns`` says otherwise)."""
    prefix = prefix or f"up{uuid.uuid4().hex[:8]}"
    hq_dialect = "sqlite" if hq_dsn.startswith("sqlite") else "postgresql"
    ext = ""
    if extension:
        ext = f"""
    extension:
      table: ext.CONTOSORETAILTRANSACTIONTABLE
      override_target: {"true" if override_target else "false"}
      key: [CHANNEL, STORE, TERMINAL, TRANSACTIONID]
      fields: {_yaml_list(EXT_FIELDS)}"""
    header_fields = HEADER_FIELDS
    lines = [f"""kafka: {{bootstrap_servers: "{bootstrap}", topic_prefix: {prefix}, default_partitions: 3,
        encoding: {encoding}}}
hq: {{name: hq, dialect: {hq_dialect}, dsn: "{hq_dsn}"}}
jobs:
  - {{id: P-0001, direction: upload}}
subjobs:
  - id: RetailTransactionTable
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONTABLE
    channel_table: ax.RETAILTRANSACTIONTABLE
    fields: {_yaml_list(header_fields)}
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]{ext}
  - id: RetailTransactionSalesTrans
    direction: upload
    hq_table: dbo.RETAILTRANSACTIONSALESTRANS
    fields: {_yaml_list(LINE_FIELDS)}
    replication_counter: REPLICATIONCOUNTERFROMORIGIN
    scheduled_by: [P-0001]
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:"""]
    for i, c in enumerate(channels):
        dsn = (channel_dsns or {}).get(c) or f"sqlite:///{tmp}/{c}.db"
        dialect = "sqlite" if dsn.startswith("sqlite") else "postgresql"
        lines.append(f"""      - id: {c}
        database: {{dialect: {dialect}, dsn: "{dsn}"}}
        attributes: {{recid: {RECIDS + i}}}""")
        regs = (registers or {}).get(c, [])
        if regs:
            lines.append("        offline_registers:")
            for r in regs:
                lines.append(f"""          - {{id: {r}, database: {{dialect: sqlite, dsn: "sqlite:///{tmp}/{r}.db"}}}}""")
    lines.append("""distribution_schedules:
  - {id: P-0001, direction: upload, jobs: [P-0001], channel_data_groups: [g1]}
""")
    path = tmp / f"topology-{prefix}.yaml"
    path.write_text("\n".join(lines))
    topo = load_topology(path, environ={})
    topo.__dict__["_path"] = path
    return topo


def topology_path(topo: Topology) -> Path:
    return Path(topo.__dict__["_path"])


def create_databases(topo: Topology) -> None:
    """HQ upload tables and every channel / register database's upload tables."""
    hq = connect(topo.hq.dialect.value, topo.hq.dsn)
    create_hq_tables(hq, get_dialect(topo.hq.dialect.value), topo)
    hq.close()
    for info in topo.databases():
        db = info.database
        conn = connect(db.dialect.value, db.dsn)
        create_channel_upload_tables(conn, get_dialect(db.dialect.value), topo)
        conn.close()


def channel_recid(topo: Topology, channel_id: str) -> int:
    ch = topo.channel(channel_id)
    assert ch is not None
    return int(ch.attributes["recid"])


def sell(topo: Topology, owner_id: str, n: int, seed: int, *, terminal: str | None = None,
         conn: Connection | None = None) -> list[str]:
    """Write ``n`` sales transactions into a channel's or register's database; returns their ids."""
    info = next(d for d in topo.databases() if d.owner_id == owner_id)
    dialect = get_dialect(info.database.dialect.value)
    own = conn is None
    c = conn if conn is not None else connect(info.database.dialect.value, info.database.dsn)
    try:
        sales = write_sales(c, dialect, channel_recid(topo, info.channel.id), info.channel.id,
                            terminal or (owner_id if info.kind == "offline" else f"{owner_id}-pos-02"), n,
                            random.Random(seed))
    finally:
        if own:
            c.close()
    return sales.transaction_ids


# -------------------------------------------------------------------------------- comparing
def _select(conn: Connection, d: Dialect, sql: str, params: Sequence[Any] = (),
            decode: Sequence[tuple[str, str, str]] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql``; ``decode``: ``(schema, table, column)`` per selected column, decoded by the dialect."""
    infos = []
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    for schema, table, column in decode:
        if (schema, table) not in cache:
            cache[(schema, table)] = {c.name: c for c in d.introspect_columns(conn, schema, table,
                                                                               require_primary_key=False)}
        infos.append(cache[(schema, table)][column])
    cur = conn.cursor()
    cur.execute(sql, list(params))
    rows = [tuple(r) for r in cur.fetchall()]
    conn.rollback()
    if infos:
        rows = [tuple(_decode(d, i, v) for i, v in zip(infos, r, strict=True)) for r in rows]
    return rows


def _decode(d: Dialect, info: Any, v: Any) -> Any:
    if v is None:
        return None
    try:
        return d.decode(info, v)
    except Exception:
        return v  # malformed on purpose (dead-letter tests): compared as stored


def _norm_rows(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out = {}
    for r in rows:
        n = tuple(normalise(v) for v in r)
        out[n[:6]] = n
    return out


def channel_rows(topo: Topology, channel_id: str) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Header (with extension columns) and line rows of a channel database, in HQ column order."""
    info = next(d for d in topo.databases() if d.owner_id == channel_id)
    d = get_dialect(info.database.dialect.value)
    conn = connect(info.database.dialect.value, info.database.dsn)
    q = d.quote_ident
    h = ", ".join(f"h.{q(c)}" for c in ["DATAAREAID", *HEADER_FIELDS]) + ", " + \
        ", ".join(f"e.{q(c)}" for c in EXT_FIELDS)
    join = " AND ".join(f"h.{q(c)} = e.{q(c)}" for c in ("DATAAREAID", "CHANNEL", "STORE", "TERMINAL", "TRANSACTIONID"))
    headers = _select(conn, d, f"SELECT {h} FROM {d.qualified('ax', 'RETAILTRANSACTIONTABLE')} h LEFT JOIN"
                               f" {d.qualified('ext', 'CONTOSORETAILTRANSACTIONTABLE')} e ON {join}",
                      decode=[("ax", "RETAILTRANSACTIONTABLE", c) for c in ["DATAAREAID", *HEADER_FIELDS]]
                      + [("ext", "CONTOSORETAILTRANSACTIONTABLE", c) for c in EXT_FIELDS])
    lines = _select(conn, d, f"SELECT {', '.join(q(c) for c in ['DATAAREAID', *LINE_FIELDS])}"
                             f" FROM {d.qualified('ax', 'RETAILTRANSACTIONSALESTRANS')}",
                    decode=[("ax", "RETAILTRANSACTIONSALESTRANS", c) for c in ["DATAAREAID", *LINE_FIELDS]])
    conn.close()
    return {"header": _norm_rows(headers), "lines": _norm_rows(lines)}


def hq_rows(topo: Topology, channel_id: str, conn: Connection | None = None
            ) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """The same rows at HQ, those uploaded from ``channel_id`` (``CDXORIGINID``)."""
    d = get_dialect(topo.hq.dialect.value)
    own = conn is None
    c = conn if conn is not None else connect(topo.hq.dialect.value, topo.hq.dsn)
    q, p = d.quote_ident, d.placeholder
    headers = _select(c, d, f"SELECT {', '.join(q(x) for x in ['DATAAREAID', *HEADER_FIELDS, *EXT_FIELDS])}"
                            f" FROM {d.qualified('dbo', 'RETAILTRANSACTIONTABLE')} WHERE {q('CDXORIGINID')} = {p}",
                      [channel_id], [("dbo", "RETAILTRANSACTIONTABLE", x)
                                     for x in ["DATAAREAID", *HEADER_FIELDS, *EXT_FIELDS]])
    lines = _select(c, d, f"SELECT {', '.join(q(x) for x in ['DATAAREAID', *LINE_FIELDS])}"
                          f" FROM {d.qualified('dbo', 'RETAILTRANSACTIONSALESTRANS')} WHERE {q('CDXORIGINID')} = {p}",
                    [channel_id], [("dbo", "RETAILTRANSACTIONSALESTRANS", x) for x in ["DATAAREAID", *LINE_FIELDS]])
    if own:
        c.close()
    return {"header": _norm_rows(headers), "lines": _norm_rows(lines)}


def hq_count(topo: Topology) -> int:
    d = get_dialect(topo.hq.dialect.value)
    conn = connect(topo.hq.dialect.value, topo.hq.dsn)
    try:
        n = 0
        for t in ("RETAILTRANSACTIONTABLE", "RETAILTRANSACTIONSALESTRANS"):
            n += _select(conn, d, f"SELECT COUNT(*) FROM {d.qualified('dbo', t)}")[0][0]
        return int(n)
    finally:
        conn.close()


def summary(rows: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]) -> dict[str, tuple[int, str]]:
    """``{table: (count, checksum)}``."""
    return {t: (len(r), checksum(r)) for t, r in rows.items()}


def assert_channel_at_hq(topo: Topology, channel_id: str) -> dict[str, tuple[int, str]]:
    """HQ holds exactly the channel's rows (count and checksum per table); returns them."""
    want, got = channel_rows(topo, channel_id), hq_rows(topo, channel_id)
    for table in want:
        missing = want[table].keys() - got[table].keys()
        extra = got[table].keys() - want[table].keys()
        differ = [k for k in want[table].keys() & got[table].keys() if want[table][k] != got[table][k]]
        assert not (missing or extra or differ), (
            f"{channel_id} {table}: {len(missing)} missing {sorted(missing)[:3]}, {len(extra)} extra, "
            f"{len(differ)} differ {[(want[table][k], got[table][k]) for k in differ[:2]]}")
    assert summary(want) == summary(got)
    return summary(got)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2,
               check: Callable[[], None] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if check is not None:
            check()
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(interval)


def expected_rows(topo: Topology) -> int:
    """Header + line rows in every channel database (what HQ must end up with)."""
    n = 0
    for c in topo.channels():
        rows = channel_rows(topo, c.channel.id)
        n += len(rows["header"]) + len(rows["lines"])
    return n


# -------------------------------------------------------------------------------- topics
def upload_records(topo: Topology, channel_id: str) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, bytes]]]:
    """Every committed (key, envelope, headers) on a channel's upload topic."""
    k = topo.kafka
    cfg = client_config(k.bootstrap_servers)
    codec = make_codec(k.codec_config(), store=SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix)))
    topic = upload_topic(k.topic_prefix, channel_id)
    out = []
    for msg in read_to_end(cfg, topic):
        env = codec.decode_value(topic, msg.value())
        assert env is not None
        out.append((codec.decode_key(topic, msg.key() or b""), env,
                    {h: v for h, v in (msg.headers() or [])}))  # type: ignore[misc]
    return out


def upload_keys(topo: Topology, channels: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The decoded keys of every committed record on each channel's upload topic (one codec for all)."""
    k = topo.kafka
    cfg = client_config(k.bootstrap_servers)
    codec = make_codec(k.codec_config(), store=SchemaStore(k.bootstrap_servers, schemas_topic(k.topic_prefix)))
    out: dict[str, list[dict[str, Any]]] = {}
    for c in channels:
        topic = upload_topic(k.topic_prefix, c)
        out[c] = [codec.decode_key(topic, msg.key() or b"") for msg in read_to_end(cfg, topic)]
    return out


def dead_letters(topo: Topology) -> list[dict[str, Any]]:
    """The value documents of every dead letter (format: cdx.stage.letters)."""
    import json

    k = topo.kafka
    return [json.loads(m.value()) for m in read_to_end(client_config(k.bootstrap_servers), dlq_topic(k.topic_prefix))]


# -------------------------------------------------------------------------------- processes
class Proc:
    """A ``cdx`` CLI process in its own session, logging to a file."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.termed: subprocess.Popen[bytes] | None = None
        """The process ``terminate`` sent SIGTERM to."""

    def start(self) -> Proc:
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([sys.executable, "-m", "cdx.cli.main", *self.args], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **(self.env or {})})
        out.close()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        assert self.alive(), f"{self.args[:2]} exited {self.proc.returncode if self.proc else None}:\n" \
                             f"{self.log.read_text()[-4000:]}"

    def terminate(self) -> None:
        """Send SIGTERM without waiting (``stop`` then waits without sending it again)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.termed = self.proc

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        if self.termed is not self.proc:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def stop_all(*procs: Proc, timeout: float = 30.0) -> tuple[int | None, ...]:
    """SIGTERM to every process at once, then their exit codes (they shut down side by side)."""
    for p in procs:
        p.terminate()
    return tuple(p.stop(timeout) for p in procs)


class Background:
    """A callable run in a daemon thread; ``join`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any], name: str = "bg") -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background thread did not finish"
        if self.error is not None:
            raise self.error


# -------------------------------------------------------------------------------- network
class TcpProxy:
    """A TCP forwarder to ``upstream`` on a fixed local port; ``down()`` cuts every connection and
    refuses new ones (the database becomes unreachable), ``up()`` brings it back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket

        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._lock = threading.Lock()
        self._socks: list[Any] = []
        self._listener: Any = None
        self.up()

    def up(self) -> None:
        import socket

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        import socket

        with self._lock:
            listener, self._listener = self._listener, None
            socks, self._socks = self._socks, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: Any) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def dsn(self, dsn: str) -> str:
        """``dsn`` (a postgresql:// URL) pointed at the proxy."""
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        return f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{self.port}/{info['dbname']}"
