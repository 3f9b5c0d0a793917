"""Bad-input corpus, third audit: unknown ids named with the known ones, options checked before anything starts.

- ``cdx channel upload`` / ``offline-sync`` with an unknown ``--channel`` name the known channel ids;
- ``cdx channel upload --from-counter N --table T`` refuses a table that is no upload table of the channel
  on the topology file, before any database or Kafka is reached (it retried until the channel database opened);
- ``cdx channel migrate --scripts ''`` refuses the empty path (``Path("")`` is the current folder);
- signal handlers installed by a command run in-process are restored when it ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.badinput.helpers import assert_clean_error, base_topology, cli, run_cdx, snapshot, write


def _topology(tmp: Path) -> Path:
    return write(tmp / "topology.yaml", base_topology(tmp))


# -- unknown --channel ids name the known ones -----------------------------------------------------------
@pytest.mark.parametrize("command", ["upload", "offline-sync"])
def test_unknown_channel_names_the_known_ids(tmp_path: Path, command: str) -> None:
    """Before: ``upload`` named only the wrong id; ``offline-sync`` printed a Python list (``['nope']``)."""
    path = _topology(tmp_path)
    before = snapshot(tmp_path)
    text = assert_clean_error(cli("channel", command, "-c", "s1", "-c", "nope", "-t", path), "'nope'",
                              "are s1: fix --channel")
    assert "[" not in text and "'s1'" not in text, text
    assert snapshot(tmp_path) == before


def test_unknown_channel_through_the_console_script(tmp_path: Path) -> None:
    out = run_cdx("channel", "offline-sync", "-c", "nope", "-t", _topology(tmp_path), cwd=tmp_path)
    assert_clean_error(out, "channel 'nope'", "the channels with offline registers are s1")


# -- --from-counter --table checked on the topology first -------------------------------------------------
@pytest.mark.parametrize("table", ["a.b.c", "ax.PARENT", "NOSUCH", " "],
                         ids=["three parts", "download table", "unknown", "blank"])
def test_from_counter_table_that_is_no_upload_table(tmp_path: Path, table: str) -> None:
    """Before: accepted, then retried (Kafka unreachable, channel database missing) until the database
    opened; only then was the name checked. Kafka here is a closed port: the error comes first."""
    path = _topology(tmp_path)
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "upload", "-c", "s1", "--from-counter", "3", "--table", table, "-t", path),
                       "channel s1: --table", "is no upload table of the channel", "it uploads ax.SALES (subjob Sales)")
    assert snapshot(tmp_path) == before


def test_from_counter_table_through_the_console_script(tmp_path: Path) -> None:
    """The real process: one line, no Kafka warning before it (the check runs before Kafka is tried); a
    subjob id is a valid name, the unknown one is named alone."""
    out = run_cdx("channel", "upload", "-c", "s1", "--from-counter", "3", "--table", "Sales", "--table",
                  "nope", "-t", _topology(tmp_path), cwd=tmp_path)
    assert_clean_error(out, "--table 'nope' is no upload table")
    assert "'Sales'" not in out.stderr


# -- migrate --scripts '' ---------------------------------------------------------------------------------
def test_migrate_refuses_an_empty_scripts_path(tmp_path: Path) -> None:
    """Before: ``--scripts ''`` ran the .sql files of the current folder."""
    path = _topology(tmp_path)
    (tmp_path / "001_drop.sql").write_text("DROP TABLE ax.SALES;\n")
    before = snapshot(tmp_path)
    out = run_cdx("channel", "migrate", "--scripts", "", "-c", "s1", "-t", path, cwd=tmp_path)
    assert_clean_error(out, "--scripts is empty", "give the folder of the .sql scripts")
    assert snapshot(tmp_path) == before


def test_migrate_refuses_a_scripts_path_that_is_no_folder(tmp_path: Path) -> None:
    path = _topology(tmp_path)
    script = tmp_path / "001_add.sql"
    script.write_text("SELECT 1;\n")
    before = snapshot(tmp_path)
    assert_clean_error(cli("channel", "migrate", "--scripts", script, "-c", "s1", "-t", path),
                       f"directory {script} does not exist or is not a directory", "fix --scripts")
    assert snapshot(tmp_path) == before
