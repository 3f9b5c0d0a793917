"""``cdx demo``: the whole exchange on the embedded default, with a live view and a verified report.

Only the options live here; the run (``cdx.cli.demo_run``) is imported when the demo starts, so that
every other ``cdx`` command starts without importing the demo, the dialects and the verifier.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cdx.cli.app import user_errors

app = typer.Typer(help="Run the whole exchange on the embedded default and verify it.", invoke_without_command=True)


@app.callback()
@user_errors
def demo(
    db: str = typer.Option("sqlite", help="Database for HQ and channels: sqlite or postgresql."),
    topology: Path = typer.Option(Path("topology.yaml"), "--topology", "-t", help="The topology to run."),
    scale: float = typer.Option(1.0, min=0.001, help="Size of the seeded HQ (1.0 = ~46k master-data rows)."),
    duration: float = typer.Option(20.0, min=0.0, help="Seconds of live traffic after the initial sync."),
    hq_rate: float = typer.Option(100.0, min=0.01, help="HQ changes per second during live traffic."),
    sales_rate: float = typer.Option(2.0, min=0.01, help="Sales per second per channel and register."),
    seed: int = typer.Option(42, help="Seed of the generated data."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave the pipeline up; Ctrl-C stops it."),
) -> None:
    """Seed HQ, run every role as its own process, sync, trade, verify and report."""
    from cdx.cli.demo_run import run_demo

    run_demo(db, topology, scale, duration, hq_rate, sales_rate, seed, keep_running)
