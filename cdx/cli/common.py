"""Options and helpers shared by the long-running commands."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cdx.stage.signals import stop_on_signals
from cdx.topology.root import Topology

if TYPE_CHECKING:
    from cdx.connectors.sink.spec import SinkSpec
    from cdx.dialects import Connection, Dialect
    from cdx.kafka.lease import Lease
    from cdx.topology.live import LiveTopology

TOPOLOGY_OPTION = typer.Option(None, "--topology", "-t", envvar="CDX_TOPOLOGY",
                               help="Topology file (default: ./topology.yaml).")
METRICS_PORT_OPTION = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics on this port.")
HA_OPTION = typer.Option(False, "--ha", envvar="CDX_HA",
                         help="Active/standby: start the same command on two hosts; the one holding the role's"
                              " lease works, the other waits and takes over when it dies (docs/deployment.md).")
LEASE_TIMEOUT_OPTION = typer.Option(10.0, "--lease-timeout", min=6.0, max=300.0,
                                    help="With --ha: seconds without a heartbeat before a dead active's role moves"
                                         " to a standby (Kafka's session timeout, 6 at least).")


def load(path: Path | None, kafka: bool = False) -> Topology:
    """The topology at ``path`` (default ``$CDX_TOPOLOGY``, else ./topology.yaml); the error boundary
    learns its Kafka servers, so a Kafka client error can name them. With ``kafka``: ``require_kafka``
    too (a one-shot command that checks nothing else first)."""
    from cdx.cli.boundary import KAFKA
    from cdx.topology import load_topology

    topo = load_topology(path)
    KAFKA["servers"] = topo.kafka.bootstrap_servers
    if kafka:
        require_kafka(topo)
    return topo


def live_topology(path: Path | None, role: str, serves: Callable[[Topology], Iterable[str]] | None = None
                  ) -> LiveTopology:
    """For a long-running role: its topology (the latest published revision, else the file at ``path``),
    following new revisions (``cdx.topology.live``); the role sets its instances and calls ``offer``.
    ``serves``: for a process of channels, the owner ids it serves in a topology; its control clients
    log in as the first of them by owner id that has a ``kafka.principals.channels`` identity."""
    from cdx.cli.boundary import KAFKA
    from cdx.topology.live import LiveTopology
    from cdx.topology.loader import default_topology_path

    live = LiveTopology.start(path or default_topology_path(), role, [], serves=serves)
    KAFKA["servers"] = live.current.kafka.bootstrap_servers
    return live


@contextmanager
def channel_database(spec: SinkSpec) -> Iterator[tuple[Connection, Dialect]]:
    """An open connection to the database of ``spec`` (a channel or register) and its dialect; closed
    after the block (what it did not commit is rolled back)."""
    from cdx.connectors.sink.tools import open_database
    from cdx.dialects import get_dialect

    with closing(open_database(spec)) as conn:
        yield conn, get_dialect(spec.dialect)


@contextmanager
def hq_database(topology: Topology) -> Iterator[tuple[Connection, Dialect]]:
    """An open connection to the topology's HQ database and its dialect (a connection failure names the HQ
    database); closed after the block (what it did not commit is rolled back)."""
    from cdx.dialects import get_dialect
    from cdx.dialects.reach import naming

    d = get_dialect(topology.hq.dialect.value)
    with naming(f"the HQ database ({topology.hq.redacted()})"):
        conn = d.connect(topology.hq.dsn)
    with closing(conn):
        yield conn, d


def start_timestamp(from_offset: int | None, from_timestamp: str | None, from_beginning: bool | None = None
                    ) -> int | None:
    """For a replay: ``--from-timestamp`` in ms (None without it); ``ConfigError`` unless exactly one start
    is given (``--from-beginning`` counts where the command has it: not None) and the offset is not negative."""
    from cdx.connectors.sink.rewind import parse_timestamp
    from cdx.errors import ConfigError

    if sum((from_offset is not None, from_timestamp is not None, bool(from_beginning))) != 1:
        raise ConfigError("give exactly one of --from-offset, --from-timestamp"
                          + (", --from-beginning" if from_beginning is not None else ""))
    if from_offset is not None and from_offset < 0:
        raise ConfigError(f"--from-offset {from_offset}: must be 0 or more")
    return parse_timestamp(from_timestamp) if from_timestamp is not None else None


def print_rewound(what: str, moved: dict[int, tuple[int, int]], after: str,
                  nothing: str = "already at or before that position") -> None:
    """A replay's outcome: each partition rewound (old -> new offset) followed by ``after``, or nothing to
    rewind (``nothing`` says why)."""
    from cdx.cli.app import console

    if not moved:
        console.print(f"{what}: nothing to rewind ({nothing})")
        return
    console.print(f"{what}: rewound " + ", ".join(f"partition {p} {old} -> {new}" for p, (old, new)
                                                 in sorted(moved.items())) + after, soft_wrap=True)


def require_kafka(topology: Topology) -> None:
    """For one-shot commands, before they change anything: ``KafkaUnreachable`` (one line naming the
    servers and the fix) at once when no bootstrap server accepts a connection."""
    from cdx.kafka.reach import require_kafka as probe

    probe(topology.kafka.bootstrap_servers)


def require_hq(topology: Topology, close: Callable[[], None] | None = None,
               fix: str = "fix hq.dsn or create the HQ database", create: bool = False) -> None:
    """For commands on HQ, before they open it: ``DatabaseUnreachable`` when HQ is a SQLite file that does
    not exist (opening it would create an empty HQ database, and its folders); with ``create`` (a command
    that creates HQ tables) only its folder must exist. ``close`` is called first (a role's live topology)."""
    from cdx.dialects.reach import require_existing

    hq = topology.hq
    try:
        require_existing(hq.dialect.value, hq.dsn, f"the HQ database ({hq.redacted()})", fix, folder_only=create)
    except Exception:
        if close is not None:
            close()
        raise


def serve_metrics(port: int | None) -> None:
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("cdx.kafka.librdkafka").setLevel(logging.WARNING)


def run_role(live: LiveTopology, role: Any, instances: Iterable[str], what: str, metrics_port: int | None,
             started: Callable[[], str], *, kafka: bool = True, run: Callable[[], None] | None = None,
             lease: Lease | None = None) -> None:
    """Serve a long-running ``role`` (``live``, ``setup``, ``stop``, ``run``) following ``live``: report its
    ``instances``, stop it on SIGTERM/SIGINT, serve metrics, ``set_up`` it (first checking Kafka unless
    ``kafka=False``), print ``started()`` and run it (``run``, default ``role.run``) until it stops.

    With a ``lease`` (``--ha``) the role is set up only once this process holds it (standby until then);
    on the way out the role is closed (its last transaction ends) before the lease is released, and
    ``LeaseLost`` is raised when another process took the lease over."""
    from cdx.cli.app import console
    from cdx.kafka.lease import LeaseLost

    role.live = live
    live.set_instances(list(instances))
    holder = f"{lease.role} of {lease.name}" if lease is not None else what
    with stop_on_signals(role.stop) as stopped:  # the previous handlers are back when the role ends
        serve_metrics(metrics_port)
        try:
            with closing(live):
                if lease is not None:
                    console.print(f"{holder}: waiting for its lease (standby while another process holds it)")
                    if not lease.acquire(stopped):
                        return
                if set_up(role.setup, what, stopped, kafka=live.current.kafka.bootstrap_servers if kafka else None):
                    console.print(started())
                    (run or role.run)()
        finally:
            if lease is not None:
                role.close()  # the last transaction ends before the standby may start
                lease.release()
    if lease is not None and lease.lost:
        raise LeaseLost(f"{holder}: another process took over (this one was paused or cut off from Kafka past"
                        " --lease-timeout); exiting so a supervisor restarts it as standby")


def set_up(setup: Callable[[], None], what: str, stopped: threading.Event, max_backoff: float = 30.0,
           kafka: str | None = None) -> bool:
    """Run ``setup()``, retrying while it raises ``RetriableError`` (Kafka or a database not answering
    yet), with exponential backoff: one log line per back-off step, naming what is unreachable.
    With ``kafka`` (bootstrap servers), each attempt first checks that a broker accepts connections
    (a closed port is reported at once, not after the clients' metadata timeout). False if a stop
    signal arrived first; other errors propagate."""
    from cdx.errors import RetriableError
    from cdx.kafka.reach import require_kafka
    from cdx.stage.backoff import Backoff

    log = logging.getLogger("cdx")
    backoff = Backoff(initial=min(0.5, max_backoff), maximum=max_backoff)
    while not stopped.is_set():
        try:
            if kafka:
                require_kafka(kafka)
            setup()
            return True
        except RetriableError as exc:
            log.warning("%s set-up will retry in %.1fs: %s", what, backoff.peek(), exc)
            backoff.wait(stopped)
    return False
