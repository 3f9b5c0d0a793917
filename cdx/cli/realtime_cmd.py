"""``cdx realtime`` (the Real-time Service) and ``cdx hq init-realtime`` (its HQ tables)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import typer

from cdx.cli.app import console, user_errors
from cdx.cli.common import TOPOLOGY_OPTION, load, require_hq, setup_logging

app = typer.Typer(help="Real-time Service: the calls registers make to HQ while the customer waits.",
                  no_args_is_help=True)
CONFIG_OPTION = typer.Option(None, "--config", "-c", envvar="CDX_REALTIME_CONFIG",
                             help="realtime.yaml with the API keys (default: ./realtime.yaml when it exists).")


def _config_path(config: Path | None) -> Path | None:
    if config is not None:
        return config
    default = Path("realtime.yaml")
    return default if default.exists() else None


@app.command("serve")
@user_errors
def serve(
    topology: Path | None = TOPOLOGY_OPTION,
    config: Path | None = CONFIG_OPTION,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8700, min=1, max=65535, help="Port to listen on."),
    pool_size: int | None = typer.Option(None, min=1, max=200,
                                         help="HQ connections per worker (default: 8; SQLite: 2, its writers queue"
                                         " anyway)."),
    workers: int | None = typer.Option(None, min=1, max=64, help="Worker processes sharing the port (default: one"
                                       " per CPU; SQLite: 1)."),
    tls_cert: Path | None = typer.Option(None, help="Serve HTTPS with this certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, help="Private key of --tls-cert (PEM)."),
    tls_client_ca: Path | None = typer.Option(None, help="Require client certificates signed by this CA; a"
                                              " certificate's common name is the caller's channel or register id."),
    access_log: bool = typer.Option(False, help="Log every request."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve the Real-time Service over the topology's HQ database (runs until SIGTERM)."""
    from cdx.errors import ConfigError
    from cdx.realtime.config import load_settings
    from cdx.realtime.server import Tls
    from cdx.realtime.server import serve as run
    from cdx.realtime.workers import default_workers

    setup_logging(verbose)
    topo = load(topology)
    settings = load_settings(_config_path(config), topo)
    require_hq(topo, fix="fix hq.dsn, or create the HQ database and its Real-time Service tables with"
                         " `cdx hq init-realtime`")
    if (tls_cert is None) != (tls_key is None) or (tls_client_ca is not None and tls_cert is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key (and --tls-client-ca only with them)")
    if not settings.key_hashes and tls_client_ca is None:
        console.print("[yellow]warning:[/] no API keys configured (realtime.yaml credentials): every request gets 401")
    tls = Tls(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    size = pool_size or (2 if topo.hq.dialect.value == "sqlite" else 8)
    run(settings, topo.hq.dialect.value, topo.hq.dsn, topo.hq.redacted(), host=host, port=port, pool_size=size,
        workers=workers or default_workers(topo.hq.dialect.value), tls=tls, access_log=access_log)


@app.command("hash-key")
@user_errors
def hash_key(key: str = typer.Argument(..., help="An API key, to print its SHA-256 for api_key_sha256.")) -> None:
    """Print the SHA-256 of an API key (for ``api_key_sha256`` in realtime.yaml)."""
    from cdx.errors import ConfigError
    from cdx.realtime.config import hash_key as digest

    if not key.strip():
        raise ConfigError("the API key is empty: give the key the register sends (cdx realtime hash-key KEY)")
    typer.echo(digest(key))


@user_errors
def init_realtime(topology: Path | None = TOPOLOGY_OPTION) -> None:
    """Create the Real-time Service's tables in the HQ database (idempotent)."""
    from cdx.dialects import get_dialect
    from cdx.realtime.schema import create_tables
    from cdx.realtime.server import open_hq

    topo = load(topology)
    require_hq(topo, create=True)  # a new SQLite file is fine, a folder that does not exist is a typo
    dialect = get_dialect(topo.hq.dialect.value)
    with closing(open_hq(dialect.connect, topo.hq.dsn, topo.hq.redacted())) as conn:
        tables = create_tables(conn, dialect)
    console.print(f"Real-time Service tables ready in {topo.hq.redacted()}: {len(tables)} tables")
