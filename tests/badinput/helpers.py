"""The bad-input corpus: run a cdx command, check it failed cleanly and changed nothing.

Every case asserts the developers' rule for bad input: a non-zero exit, one readable ``error:``
message on stderr (what, where, how to fix), no traceback, and nothing half-applied (the files
of the case's folder are unchanged; callers check databases and topics where a case touches them).
Most cases run in-process with typer's ``CliRunner``; ``run_cdx`` runs the real console script.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cdx.cli.main import app

CLOSED_PORT = "127.0.0.1:1"
"""A local address nothing listens on: Kafka or PostgreSQL there refuses at once."""


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def cli(*args: Any, env: dict[str, str] | None = None) -> Outcome:
    """``cdx <args>`` in-process (the app ``cdx.cli.main`` registers, with its error boundary)."""
    res = CliRunner().invoke(app, [str(a) for a in args], env=env)
    return Outcome(res.exit_code, res.stdout, res.stderr, res.exception)


def run_cdx(*args: Any, cwd: Path, timeout: float = 120) -> Outcome:
    """The real ``cdx`` console script in a subprocess."""
    exe = Path(sys.executable).with_name("cdx")
    env = {k: v for k, v in os.environ.items() if k != "CDX_TRACEBACK"}
    proc = subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(out: Outcome, *expected: str, code: int = 1, max_lines: int = 1) -> str:
    """One ``error:`` message (``max_lines`` lines at most: a topology error lists its problems
    below the first line), exit ``code``, no traceback; every ``expected`` text is in it."""
    text = out.stderr
    assert out.exit_code == code, f"exit {out.exit_code}, stderr: {text!r}, stdout: {out.stdout!r}"
    if out.exception is not None:
        assert isinstance(out.exception, SystemExit), f"escaped: {out.exception!r}"
    assert "Traceback" not in text + out.stdout, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), f"no error line: {text!r}"
    assert sum(line.startswith(("error:", "warning:")) for line in lines) == 1, f"more than one message: {text!r}"
    assert len(lines) <= max_lines, f"{len(lines)} lines: {text!r}"
    assert all(line.startswith("  ") for line in lines[1:]), text
    for want in expected:
        assert want in text, f"{want!r} not in {text!r}"
    return text


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to prove nothing changed)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def base_topology(tmp: Path, kafka: str = CLOSED_PORT, prefix: str = "bad") -> dict[str, Any]:
    """A valid one-channel topology (SQLite HQ and channel under ``tmp``); cases break one thing."""
    return copy.deepcopy({
        "version": 1,
        "kafka": {"bootstrap_servers": kafka, "topic_prefix": prefix, "default_partitions": 1,
                  "replication_factor": 1},
        "hq": {"name": "hq", "dialect": "sqlite", "dsn": f"sqlite:///{tmp}/hq.db"},
        "jobs": [{"id": "1040", "direction": "download"}, {"id": "P-0001", "direction": "upload"}],
        "subjobs": [
            {"id": "Parent", "hq_table": "dbo.PARENT", "fields": ["ID", "NAME", "PRICE", "VER", "TS"],
             "scheduled_by": ["1040"]},
            {"id": "Sales", "hq_table": "dbo.SALES", "fields": ["ID", "STORE", "AMOUNT", "REPLCOUNTER"],
             "scheduled_by": ["P-0001"], "direction": "upload", "replication_counter": "REPLCOUNTER"},
        ],
        "channel_data_groups": [{"id": "g1", "legal_entities": ["usrt"], "channels": [
            {"id": "s1", "database": {"dialect": "sqlite", "dsn": f"sqlite:///{tmp}/s1.db"},
             "offline_registers": [{"id": "s1-pos-01", "database": {"dialect": "sqlite",
                                                                      "dsn": f"sqlite:///{tmp}/s1-pos.db"}}]}]}],
        "distribution_schedules": [
            {"id": "DL", "direction": "download", "jobs": ["1040"], "channel_data_groups": ["g1"]},
            {"id": "UP", "direction": "upload", "jobs": ["P-0001"], "channel_data_groups": ["g1"]}],
    })


def write(path: Path, data: dict[str, Any]) -> Path:
    """``data`` as a topology file (JSON is YAML)."""
    path.write_text(json.dumps(data, indent=1))
    return path
