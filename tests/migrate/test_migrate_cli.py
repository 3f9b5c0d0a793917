"""The ``cdx channel migrate`` command: selection, summary table, exit code, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.topology.dump import dump_topology
from tests.migrate.helpers import topology, write


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    topo = tmp_path / "topology.yaml"
    topo.write_text(dump_topology(topology(tmp_path)), encoding="utf-8")
    scripts = write(tmp_path / "scripts", {
        "0001_a.sqlite.sql": "CREATE TABLE ext_A (ID INTEGER NOT NULL PRIMARY KEY);\n",
        "notes.txt": "ignored",
    })
    return topo, scripts


def test_migrate_all_then_again(files: tuple[Path, Path]) -> None:
    topo, scripts = files
    runner = CliRunner()
    first = runner.invoke(app, ["channel", "migrate", "-t", str(topo), "--scripts", str(scripts), "--all"])
    assert first.exit_code == 0, first.output
    assert "notes.txt: not a .sql file; ignored" in first.output
    assert "store-1-pos-1" in first.output
    again = runner.invoke(app, ["channel", "migrate", "-t", str(topo), "--scripts", str(scripts), "-c", "store-1"])
    assert again.exit_code == 0, again.output
    assert "store-1-pos-1" not in again.output


def test_failure_exits_non_zero_with_the_reason(files: tuple[Path, Path]) -> None:
    topo, scripts = files
    write(scripts, {"0002_bad.sqlite.sql": "INSERT INTO ext_NOPE VALUES (1);\n"})
    result = CliRunner().invoke(app, ["channel", "migrate", "-t", str(topo), "-s", str(scripts), "--all"])
    assert result.exit_code == 1
    assert "0002_bad.sqlite.sql failed" in result.output and "no such table: ext_NOPE" in result.output


def test_selection_is_required(files: tuple[Path, Path]) -> None:
    topo, scripts = files
    result = CliRunner().invoke(app, ["channel", "migrate", "-t", str(topo), "-s", str(scripts)])
    assert result.exit_code == 1
    assert "--channel ID (repeatable) or --all" in result.output
    unknown = CliRunner().invoke(app, ["channel", "migrate", "-t", str(topo), "-s", str(scripts), "-c", "nope"])
    assert unknown.exit_code == 1 and "no channel or offline register 'nope'" in unknown.output
