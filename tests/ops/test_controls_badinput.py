"""Bad input to the new operations commands: one ``error:`` line saying what and how to fix, exit 1, no
traceback, nothing written. No broker needed: each is refused before Kafka is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from tests.ops.test_schedule_units import BASE

CASES = [
    (["channel", "pause", "nosuch"], "no channel or offline register 'nosuch' in the topology; known: s1"),
    (["channel", "resume", "s1", "nosuch"], "no channel or offline register 'nosuch'"),
    (["schedule", "run-now", "NOPE"], "no distribution schedule 'NOPE' in the topology; known: DL, NIGHT, UP"),
    (["schedule", "run-now", "UP"], "is an upload schedule: uploads run continuously"),
    (["route", "replay", "--table", "dbo.NOPE", "--from-offset", "0"],
     "no download subjob for table 'dbo.NOPE' in the topology; known HQ tables: dbo.INVENTTABLE"),
    (["route", "replay", "--table", "Items"], "give exactly one of --from-offset, --from-timestamp"),
    (["route", "replay", "--table", "Items", "--from-timestamp", "yesterday"], "use ISO 8601"),
    (["hq", "upload-sink", "replay", "--channel", "s9", "--from-offset", "0"], "no uploading channel 's9'"),
    (["capture", "resnapshot", "--table", "dbo.NOPE"], "no download subjob for table 'dbo.NOPE'"),
]


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(a[:2]) + f"-{i}" for i, (a, _) in enumerate(CASES)])
def test_refused_with_one_clear_line(tmp_path: Path, args: list[str], says: str) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(BASE.format(schedule="", job_offline="", sub_offline="", up_schedule="")
                    .replace("127.0.0.1:9092", "127.0.0.1:1").replace("sqlite:///", f"sqlite:///{tmp_path}/"))
    done = CliRunner().invoke(app, [*args, "--topology", str(path)])
    err = done.stderr
    assert done.exit_code == 1, done.output
    assert err.startswith("error: ") and says in " ".join(err.split()), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["topology.yaml"]  # no database created
