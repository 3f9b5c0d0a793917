"""Bad-input corpus through the real ``cdx`` console script (a few cases: each starts a Python), and
the rule that every registered command sits behind the error boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from cdx.cli.boundary import MARK
from cdx.cli.main import app
from tests.badinput.helpers import Outcome, assert_clean_error, base_topology, snapshot, write


def _commands(typer_app: typer.Typer, prefix: str = "cdx") -> list[tuple[str, object]]:
    out = [(f"{prefix} {c.name or getattr(c.callback, '__name__', '?')}", c.callback)
           for c in typer_app.registered_commands]
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            out += _commands(group.typer_instance, f"{prefix} {group.name}")
    return out


def test_every_command_has_the_error_boundary() -> None:
    commands = _commands(app)
    assert len(commands) > 20
    missing = [name for name, callback in commands if not getattr(callback, MARK, False)]
    assert missing == []


def test_real_console_script(tmp_path: Path, postgres_server: str) -> None:
    """Two failing commands at once: HQ DSN naming an unknown database, Kafka at a closed port."""
    closed = write(tmp_path / "closed.yaml", base_topology(tmp_path))
    hq = base_topology(tmp_path)
    hq["hq"] = {"name": "hq", "dialect": "postgresql",
                "dsn": postgres_server.rsplit("/", 1)[0] + "/cdx_badinput_nosuch"}
    unknown_db = write(tmp_path / "hq.yaml", hq)
    before = snapshot(tmp_path)
    exe = str(Path(sys.executable).with_name("cdx"))
    env = {k: v for k, v in os.environ.items() if k != "CDX_TRACEBACK"}
    runs = {
        "enable-tracking": [exe, "hq", "enable-tracking", "-t", unknown_db],
        "dlq list": [exe, "dlq", "list", "-t", closed],
    }
    procs = {k: subprocess.Popen(list(map(str, v)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, cwd=tmp_path) for k, v in runs.items()}
    outs = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        outs[k] = Outcome(p.returncode, stdout, stderr)
    assert_clean_error(outs["enable-tracking"], "cannot reach the HQ database", "cdx_badinput_nosuch",
                       "does not exist")
    assert_clean_error(outs["dlq list"], "cannot reach Kafka at 127.0.0.1:1", "Connection refused")
    assert snapshot(tmp_path) == before
