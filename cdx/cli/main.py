"""Entry point of the ``cdx`` console command: registers every command group."""

from __future__ import annotations

import sys

import typer

from cdx import __version__
from cdx.cli import (
    apply_cmd,
    capture_cmd,
    controls_cmd,
    demo,
    deploy_cmd,
    dev,
    dlq_cmd,
    hop_replay_cmd,
    kafka_cmd,
    migrate_cmd,
    realtime_cmd,
    replay_cmd,
    route_cmd,
    seed_cmd,
    sink_cmd,
    status_cmd,
    topic_cmd,
    topology_cmd,
    upload_cmd,
)
from cdx.cli.app import app
from cdx.cli.boundary import install as install_error_boundary


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cdx {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Commerce Data Exchange on Apache Kafka."""


app.add_typer(dev.app, name="dev")
app.add_typer(topology_cmd.app, name="topology")
topology_cmd.app.command("apply")(apply_cmd.apply)
app.add_typer(seed_cmd.app, name="seed")
app.add_typer(demo.app, name="demo")
hop_replay_cmd.capture_app.callback()(capture_cmd.capture)  # cdx capture [resnapshot]
app.add_typer(hop_replay_cmd.capture_app, name="capture")
hop_replay_cmd.route_app.callback()(route_cmd.route)  # cdx route [replay]
app.add_typer(hop_replay_cmd.route_app, name="route")
app.add_typer(capture_cmd.hq_app, name="hq")
app.command("sink")(sink_cmd.sink)
app.add_typer(sink_cmd.channel_app, name="channel")
sink_cmd.channel_app.command("bootstrap")(sink_cmd.bootstrap)
app.add_typer(dlq_cmd.app, name="dlq")
app.add_typer(kafka_cmd.app, name="kafka")
app.add_typer(deploy_cmd.app, name="deploy")
app.command("replay")(replay_cmd.replay)
sink_cmd.channel_app.command("upload")(upload_cmd.upload)
sink_cmd.channel_app.command("offline-sync")(upload_cmd.offline_sync)
sink_cmd.channel_app.command("migrate")(migrate_cmd.migrate)
hop_replay_cmd.upload_sink_app.callback()(upload_cmd.upload_sink)  # cdx hq upload-sink [replay]
capture_cmd.hq_app.add_typer(hop_replay_cmd.upload_sink_app, name="upload-sink")
capture_cmd.hq_app.command("upload-status")(upload_cmd.status)
app.command("status")(status_cmd.status)
app.add_typer(realtime_cmd.app, name="realtime")
capture_cmd.hq_app.command("init-realtime")(realtime_cmd.init_realtime)
app.add_typer(topic_cmd.app, name="topic")
sink_cmd.channel_app.command("pause")(controls_cmd.pause)
sink_cmd.channel_app.command("resume")(controls_cmd.resume)
app.add_typer(controls_cmd.schedule_app, name="schedule")
install_error_boundary(app)  # keep last: every command registered above gets the error boundary


def main() -> None:
    """The ``cdx`` console script; anything escaping typer itself still ends as one ``error:`` line."""
    from cdx.cli.boundary import report

    install_error_boundary(app)  # again: commands registered after the module-level call
    try:
        app()
    except (KeyboardInterrupt, Exception) as exc:  # SystemExit (typer's own exits) passes
        sys.exit(report(exc))


if __name__ == "__main__":
    main()
