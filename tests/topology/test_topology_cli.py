"""The ``cdx topology`` and ``cdx seed`` commands: output, exit codes, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdx.cli import seed_cmd, topology_cmd

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CDX_TOPOLOGY", raising=False)


def test_validate_sample(repo_root: Path) -> None:
    result = runner.invoke(topology_cmd.app, ["validate", str(repo_root / "topology.yaml")])
    assert result.exit_code == 0, result.output
    assert "is valid: 7 jobs" in result.output
    assert "de-stores" in result.output and "RetailTransactionTable" in result.output


def test_validate_defaults_to_env_then_cwd(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(topology_cmd.app, ["validate"])
    assert result.exit_code == 1
    assert "topology file 'topology.yaml' not found; pass the file or set $CDX_TOPOLOGY" in result.output
    monkeypatch.setenv("CDX_TOPOLOGY", str(repo_root / "topology.yaml"))
    assert runner.invoke(topology_cmd.app, ["validate"]).exit_code == 0


def test_validate_prints_every_problem(tmp_path: Path, minimal: Callable[[], dict[str, Any]],
                                       to_yaml: Callable[[Any], str]) -> None:
    data = minimal()
    data["subjobs"][0]["fields"].append("DATAAREAID")
    data["subjobs"][0]["scheduled_by"] = ["[nope]"]
    path = tmp_path / "topology.yaml"
    path.write_text(to_yaml(data))
    result = runner.invoke(topology_cmd.app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"{path} is invalid (2 problems)" in result.output
    assert "subjobs[0].fields[3].name: 'DATAAREAID' is mapped explicitly" in result.output
    assert "cannot be used in a Kafka topic name" in result.output and "'[nope]'" in result.output


def test_diff_command(tmp_path: Path, minimal: Callable[[], dict[str, Any]], to_yaml: Callable[[Any], str]) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(to_yaml(minimal()))
    data = minimal()
    data["channel_data_groups"][1]["channels"].append({"id": "s9", "database": {"dsn": "sqlite:///s9.db"},
                                                       "attributes": {"recid": 9}})
    new.write_text(to_yaml(data))
    result = runner.invoke(topology_cmd.app, ["diff", str(old), str(new)])
    assert result.exit_code == 0, result.output
    assert "channel 's9' added (group 'g2')" in result.output
    assert "1 change(s), 1 needing a bootstrap" in result.output
    same = runner.invoke(topology_cmd.app, ["diff", str(old), str(old)])
    assert "no operational changes" in same.output
    broken = runner.invoke(topology_cmd.app, ["diff", str(old), str(tmp_path / "missing.yaml")])
    assert broken.exit_code == 1 and "not found" in broken.output


def test_seed_import_writes_a_valid_topology(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "topology.yaml"
    seed = fixtures_dir / "seed"
    result = runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), str(seed / "move-subjob.xml"),
                                          "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "placeholders" in result.output
    assert runner.invoke(topology_cmd.app, ["validate", str(out)]).exit_code == 0
    again = runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), "-o", str(out)])
    assert again.exit_code == 1 and "exists: use --into" in again.output
    forced = runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), "-o", str(out), "--force"])
    assert forced.exit_code == 0


def test_seed_import_into_and_stdout(fixtures_dir: Path, tmp_path: Path) -> None:
    seed = fixtures_dir / "seed"
    target = tmp_path / "topology.yaml"
    runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), "-o", str(target)])
    before = target.read_text()
    result = runner.invoke(seed_cmd.app, ["import", str(seed / "pull-extension-columns.xml"), "--into", str(target)])
    assert result.exit_code == 0, result.output
    after = target.read_text()
    assert after != before and "FABRIKAMTRANSACTIONTABLE" in after and after.startswith("# Generated")
    printed = runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), "-o", "-"])
    assert printed.exit_code == 0 and "RetailCustTable" in printed.stdout


def test_seed_import_errors_exit_1(fixtures_dir: Path, tmp_path: Path) -> None:
    seed = fixtures_dir / "seed"
    result = runner.invoke(seed_cmd.app, ["import", str(seed / "malformed.xml"), "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 1
    assert "malformed.xml:6: malformed XML" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.yaml").exists()
    replace = runner.invoke(seed_cmd.app, ["import", str(seed / "base.xml"), "--replace"])
    assert replace.exit_code == 1 and "--replace needs --into" in replace.output


def test_commands_are_registered_on_the_root_app() -> None:
    from cdx.cli.main import app

    for args in (["topology", "--help"], ["seed", "import", "--help"], ["topology", "diff", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
