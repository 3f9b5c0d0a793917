"""Bad-input corpus, connections: DSNs naming an unknown database, role, port or host; Kafka
addresses nothing answers at; command options that select records; ``cdx status`` showing what is
unreachable; long-running roles saying once per back-off step what they wait for.

Kafka-unreachable cases use a closed local port: refused at once, so no case waits on a timeout."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.badinput.helpers import CLOSED_PORT, assert_clean_error, base_topology, cli, snapshot, write

Data = dict[str, Any]
NOSUCH_DB = "cdx_badinput_nosuch"


def _pg(server: str, *, db: str = "postgres", user: str = "postgres", host: str | None = None,
        port: int | None = None) -> str:
    info = conninfo_to_dict(server)
    return f"postgresql://{user}@{host or info.get('host', '127.0.0.1')}:{port or info.get('port', 5432)}/{db}"


def _hq(dsn: Callable[[str], str]) -> Callable[[Data, str, Path], None]:
    def mutate(data: Data, server: str, tmp: Path) -> None:
        value = dsn(server) if "{tmp}" not in dsn("") else dsn("").replace("{tmp}", str(tmp))
        data["hq"] = {"name": "hq", "dialect": "postgresql" if value.startswith("postgresql") else "sqlite",
                      "dsn": value}

    return mutate


def _channel(dsn: Callable[[str], str], register: bool = False) -> Callable[[Data, str, Path], None]:
    def mutate(data: Data, server: str, tmp: Path) -> None:
        node = data["channel_data_groups"][0]["channels"][0]
        if register:
            node = node["offline_registers"][0]
        node["database"] = {"dialect": "postgresql", "dsn": dsn(server)}

    return mutate


# (case id, mutation(data, pg server, tmp), command, texts the message must contain)
DSN_CASES: list[tuple[str, Callable[[Data, str, Path], None], list[str], list[str]]] = [
    ("HQ database unknown, enable-tracking", _hq(lambda s: _pg(s, db=NOSUCH_DB)), ["hq", "enable-tracking"],
     ["the HQ database", f'database "{NOSUCH_DB}" does not exist', "create the database"]),
    ("HQ database unknown, tracking-cleanup", _hq(lambda s: _pg(s, db=NOSUCH_DB)), ["hq", "tracking-cleanup"],
     ["the HQ database", f'database "{NOSUCH_DB}" does not exist']),
    ("HQ role unknown", _hq(lambda s: _pg(s, user="cdx_badinput_nobody")), ["hq", "enable-tracking"],
     ['role "cdx_badinput_nobody" does not exist', "fix the user name"]),
    ("HQ port closed", _hq(lambda s: _pg(s, port=1)), ["hq", "tracking-cleanup"],
     ["the HQ database", "Connection refused", "start the database server or fix the host and port"]),
    ("HQ host unknown", _hq(lambda s: _pg(s, host="cdx-badinput.invalid")), ["hq", "enable-tracking"],
     ["cdx-badinput.invalid", "fix the host name"]),
    ("HQ SQLite directory impossible", _hq(lambda s: "sqlite:////proc/cdx-badinput/hq.db"), ["hq", "enable-tracking"],
     ["/proc/cdx-badinput/hq.db does not exist", "fix hq.dsn or create the HQ database"]),
    ("HQ upload status, database unknown", _hq(lambda s: _pg(s, db=NOSUCH_DB)), ["hq", "upload-status"],
     [f'database "{NOSUCH_DB}" does not exist']),
    ("channel database unknown", _channel(lambda s: _pg(s, db=NOSUCH_DB)), ["channel", "sessions", "-c", "s1"],
     ["the database of channel s1", f'database "{NOSUCH_DB}" does not exist']),
    ("register port closed", _channel(lambda s: _pg(s, port=1), register=True),
     ["channel", "sessions", "-c", "s1-pos-01"], ["offline register s1-pos-01", "Connection refused"]),
    ("channel role unknown", _channel(lambda s: _pg(s, user="cdx_badinput_nobody")), ["channel", "sessions", "-c",
                                                                                      "s1"],
     ['role "cdx_badinput_nobody" does not exist']),
]


@pytest.mark.parametrize(("mutate", "command", "expected"), [c[1:] for c in DSN_CASES],
                         ids=[c[0] for c in DSN_CASES])
def test_unreachable_database(tmp_path: Path, postgres_server: str, mutate: Callable[[Data, str, Path], None],
                              command: list[str], expected: list[str]) -> None:
    data = base_topology(tmp_path)
    mutate(data, postgres_server, tmp_path)
    path = write(tmp_path / "topology.yaml", data)
    before = snapshot(tmp_path)
    assert_clean_error(cli(*command, "-t", path), *expected)
    assert snapshot(tmp_path) == before


def test_hq_file_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "hq.db").write_bytes(b"this is a text file, not SQLite" * 10)
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    before = snapshot(tmp_path)
    assert_clean_error(cli("hq", "enable-tracking", "-t", path), "not a SQLite database")
    assert snapshot(tmp_path) == before


def test_unknown_channel_id(tmp_path: Path) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    assert_clean_error(cli("channel", "sessions", "-c", "nope", "-t", path), "no channel or offline register 'nope'",
                       "known: s1, s1-pos-01")


# -- Kafka nothing answers at ---------------------------------------------------------------------
KAFKA_CASES: list[tuple[str, str, list[str]]] = [
    ("dlq list", CLOSED_PORT, ["dlq", "list"]),
    ("dlq replay", CLOSED_PORT, ["dlq", "replay", "--all"]),
    ("replay", CLOSED_PORT, ["replay", "-c", "s1", "--from-beginning"]),
    ("channel bootstrap", CLOSED_PORT, ["channel", "bootstrap", "-c", "s1"]),
    ("channel resync", CLOSED_PORT, ["channel", "resync", "-c", "s1"]),
    ("channel init", CLOSED_PORT, ["channel", "init"]),
    ("two closed ports", f"{CLOSED_PORT},127.0.0.1:2", ["dlq", "list"]),
    ("unknown host", "cdx-badinput.invalid:9092", ["channel", "bootstrap", "-c", "s1"]),
]


@pytest.mark.parametrize(("servers", "command"), [c[1:] for c in KAFKA_CASES], ids=[c[0] for c in KAFKA_CASES])
def test_kafka_does_not_answer(tmp_path: Path, servers: str, command: list[str]) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path, kafka=servers))
    before = snapshot(tmp_path)
    text = assert_clean_error(cli(*command, "-t", path), f"cannot reach Kafka at {servers}",
                              "fix kafka.bootstrap_servers")
    for server in servers.split(","):
        assert server in text
    assert snapshot(tmp_path) == before, "no channel database may be created or changed"


# -- options selecting records ------------------------------------------------------------------------
OPTION_CASES: list[tuple[str, list[str], list[str]]] = [
    ("replay without a start", ["replay", "-c", "s1"], ["give exactly one of"]),
    ("replay with two starts", ["replay", "-c", "s1", "--from-offset", "3", "--from-beginning"],
     ["give exactly one of"]),
    ("replay from a negative offset", ["replay", "-c", "s1", "--from-offset", "-1"], ["must be 0 or more"]),
    ("replay from an unreadable time", ["replay", "-c", "s1", "--from-timestamp", "yesterday noon"],
     ["--from-timestamp 'yesterday noon'", "ISO 8601"]),
    ("dlq replay with --all and --offset", ["dlq", "replay", "--all", "--offset", "3"], ["give either --all"]),
    ("replay of an unknown channel", ["replay", "-c", "nope", "--from-beginning"], ["no channel or offline register"]),
]


@pytest.mark.parametrize(("command", "expected"), [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_invalid_record_selection(tmp_path: Path, command: list[str], expected: list[str]) -> None:
    """Checked before Kafka or any database is asked (the topology points Kafka at a closed port)."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    before = snapshot(tmp_path)
    assert_clean_error(cli(*command, "-t", path), *expected)
    assert snapshot(tmp_path) == before


# -- cdx status shows what is unreachable; roles say so once per back-off step ------------------------
def test_status_shows_unreachable_databases_and_kafka(tmp_path: Path, postgres_server: str) -> None:
    data = base_topology(tmp_path)
    _channel(lambda s: _pg(s, db=NOSUCH_DB))(data, postgres_server, tmp_path)
    _hq(lambda s: _pg(s, port=1))(data, postgres_server, tmp_path)
    path = write(tmp_path / "topology.yaml", data)
    out = cli("status", "--json", "-t", path)
    assert out.exit_code == 0, out.stderr
    st = json.loads(out.stdout)
    s1 = next(d for d in st["databases"] if d["owner_id"] == "s1")
    assert s1["reachable"] is False and s1["error"].startswith("unreachable:") and NOSUCH_DB in s1["error"]
    assert st["kafka_reachable"] is False and st["hq_reachable"] is False
    assert any("cannot reach Kafka at 127.0.0.1:1" in w for w in st["warnings"])
    assert any(w.startswith("HQ database") and "Connection refused" in w for w in st["warnings"])
    table = cli("status", "-t", path)
    assert table.exit_code == 0 and "unreachable" in table.stdout and "Traceback" not in table.stdout + table.stderr


def test_long_running_role_reports_each_back_off_step_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    from cdx.cli.common import set_up

    stopped = threading.Event()
    calls: list[int] = []
    timer = threading.Timer(2.0, stopped.set)
    timer.start()
    with caplog.at_level(logging.WARNING, logger="cdx"):
        assert set_up(lambda: calls.append(1), "sink", stopped, max_backoff=1.0, kafka=CLOSED_PORT) is False
    timer.cancel()
    lines = [r.getMessage() for r in caplog.records if r.name == "cdx"]
    assert calls == [] and 2 <= len(lines) <= 5, lines
    for line in lines:
        assert "\n" not in line and line.startswith("sink set-up will retry in ")
        assert "cannot reach Kafka at 127.0.0.1:1: Connection refused" in line


def test_enable_tracking_with_a_missing_hq_table_changes_nothing(tmp_path: Path) -> None:
    import sqlite3

    data = base_topology(tmp_path)
    data["subjobs"].append({"id": "Other", "hq_table": "dbo.OTHER", "fields": ["ID"], "scheduled_by": ["1040"]})
    path = write(tmp_path / "topology.yaml", data)
    conn = sqlite3.connect(tmp_path / "hq.db")
    conn.execute('CREATE TABLE "dbo_PARENT" (ID BIGINT PRIMARY KEY, NAME TEXT, PRICE NUMERIC, VER BIGINT, TS TEXT)')
    conn.commit()
    schema = conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    assert_clean_error(cli("hq", "enable-tracking", "-t", path), "table dbo.OTHER does not exist",
                       "create it or fix the table name")
    conn = sqlite3.connect(tmp_path / "hq.db")
    assert conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall() == schema
    conn.close()
