"""``cdx dev``: local Kafka and PostgreSQL for development, tests and the demo."""

from __future__ import annotations

import json
from typing import Any

import typer

from cdx.cli.app import console, user_errors
from cdx.errors import ConfigError

app = typer.Typer(help="Local development services: a real Kafka broker (KRaft) and PostgreSQL.",
                  no_args_is_help=True)
kafka_app = typer.Typer(help="A local Apache Kafka (KRaft) broker or 3-broker cluster.", no_args_is_help=True)
pg_app = typer.Typer(help="A local PostgreSQL server (private cluster when none answers).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(pg_app, name="postgres")


@pg_app.command("up")
@user_errors
def pg_up() -> None:
    """Start (or find) PostgreSQL and print its DSN."""
    from cdx.infra.postgres import launcher

    console.print(launcher.up())  # a PostgresError is a FatalError: one error line


@pg_app.command("down")
@user_errors
def pg_down() -> None:
    """Stop the private PostgreSQL cluster (never a server cdx did not start)."""
    from cdx.infra.postgres import launcher

    console.print("stopped" if launcher.down() else "not running")


@pg_app.command("status")
def pg_status() -> None:
    """Show the private cluster's DSN, state and log file."""
    from cdx.infra.postgres import launcher

    console.print_json(json.dumps(launcher.status()))


SECURITY_OPTION = typer.Option("plaintext", "--security",
                               help="plaintext, sasl_plaintext or sasl_ssl: a separate broker (or 3-broker cluster)"
                                    " with SCRAM-SHA-512 users and the StandardAuthorizer (ACLs enforced); sasl_ssl"
                                    " with certificates generated for it.")


USER_OPTION = typer.Option(None, "--user", help="NAME=PASSWORD: a SCRAM-SHA-512 user to create (repeatable;"
                                                " sasl_plaintext/sasl_ssl).")


def _cluster(brokers: int, security: str, users: dict[str, str] | None = None) -> Any:
    from cdx.infra.kafka import launcher, secure

    if security == "plaintext":
        return launcher.Cluster.load(brokers)
    if security not in ("sasl_plaintext", "sasl_ssl"):
        raise ConfigError(f"--security {security!r} is not known: use plaintext, sasl_plaintext or sasl_ssl")
    return secure.SecureCluster.load(brokers, users=users, tls=security == "sasl_ssl")


@kafka_app.command("up")
@user_errors
def kafka_up(brokers: int = typer.Option(1, "--brokers", help="1 (combined broker/controller) or 3."),
             security: str = SECURITY_OPTION,
             user: list[str] | None = USER_OPTION) -> None:
    """Start (or reuse) the local Kafka and print its bootstrap servers and log files."""
    users = dict(u.split("=", 1) for u in user or [] if "=" in u)
    if len(users) != len(user or []):
        raise ConfigError("--user takes NAME=PASSWORD (for example --user store-0001=s3cret)")
    cluster = _cluster(brokers, security, users)  # a KafkaLauncherError is a FatalError: one error line
    bootstrap = cluster.up()
    if users:
        from cdx.infra.kafka.secure import upsert_scram_users

        upsert_scram_users(cluster.client_config(), users)  # storage formatted earlier: add them now
    console.print(f"bootstrap servers: [bold]{bootstrap}[/]")
    if security != "plaintext":
        admin = cluster.client_config()
        console.print(f"  administrator: {admin['sasl.username']} / {admin['sasl.password']}"
                      f" ({admin['security.protocol']}, {admin['sasl.mechanism']}); users: {', '.join(users) or '-'}")
        if "ssl.ca.location" in admin:
            console.print(f"  CA certificate: {admin['ssl.ca.location']}")
    for node in cluster.nodes:
        console.print(f"  node {node.node_id}: log {node.log_file}")


@kafka_app.command("down")
@user_errors
def kafka_down(brokers: int = typer.Option(1, "--brokers", help="1 or 3."),
               security: str = SECURITY_OPTION) -> None:
    """Stop exactly the broker processes the launcher started (by pid file)."""
    stopped = _cluster(brokers, security).down()
    console.print(f"stopped nodes: {stopped}" if stopped else "not running")


@kafka_app.command("status")
@user_errors
def kafka_status(brokers: int = typer.Option(1, "--brokers", help="1 or 3."),
                 security: str = SECURITY_OPTION) -> None:
    """Show each node's address, pid and log file."""
    console.print_json(json.dumps(_cluster(brokers, security).status()))
