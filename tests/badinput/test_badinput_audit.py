"""Bad-input corpus, second audit: inputs that gave a misleading message, exit 0, or left a file behind.

- a SQLite HQ file that does not exist: every command on HQ says so; none creates it (or its folders);
- read-only commands (``status``, ``channel sessions``, ``dlq list``) create no channel SQLite file;
- an unknown key that is a key of another section says where it belongs;
- out-of-range command options, unknown ``--channel`` ids, unusable deploy names;
- a missing ODBC driver, realtime.yaml syntax and encoding, seed-file versions.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cdx.codec import Column, LogicalType
from tests.badinput.helpers import (
    CLOSED_PORT,
    Outcome,
    assert_clean_error,
    base_topology,
    cli,
    run_cdx,
    snapshot,
    write,
)
from tests.sink.helpers import FakeRouter, sqlite_db, write_topology

SEEDS = Path(__file__).parent.parent / "fixtures" / "seed"


def _missing_hq(tmp: Path, kafka: str = CLOSED_PORT) -> Path:
    data = base_topology(tmp, kafka=kafka)
    data["hq"]["dsn"] = f"sqlite:///{tmp}/nowhere/hq.db"
    return write(tmp / "topology.yaml", data)


# -- a SQLite HQ file that does not exist ---------------------------------------------------------------
HQ_COMMANDS: list[list[str]] = [
    ["hq", "enable-tracking"],
    ["hq", "enable-tracking", "--only-new"],
    ["hq", "tracking-cleanup"],
    ["hq", "upload-status"],
    ["capture", "resnapshot", "--table", "dbo.PARENT", "--wait", "0"],
    ["realtime", "serve"],
]


@pytest.mark.parametrize("command", HQ_COMMANDS, ids=[" ".join(c[:2]) for c in HQ_COMMANDS])
def test_missing_sqlite_hq_is_reported_not_created(tmp_path: Path, command: list[str]) -> None:
    """Before: each created ``nowhere/hq.db`` and then failed on its first table, or exited 0."""
    path = _missing_hq(tmp_path)
    before = snapshot(tmp_path)
    assert_clean_error(cli(*command, "-t", path), "the HQ database", f"{tmp_path}/nowhere/hq.db does not exist",
                       "fix hq.dsn")
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere").exists()


def test_init_realtime_creates_a_sqlite_hq_only_in_an_existing_folder(tmp_path: Path) -> None:
    """Before: a mistyped folder was created, folder by folder, with an HQ holding only the service's tables."""
    path = _missing_hq(tmp_path)
    before = snapshot(tmp_path)
    assert_clean_error(cli("hq", "init-realtime", "-t", path), f"the folder {tmp_path}/nowhere does not exist",
                       "fix the path in the DSN or create the folder")
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere").exists()
    (tmp_path / "nowhere").mkdir()
    made = cli("hq", "init-realtime", "-t", path)
    assert made.exit_code == 0 and (tmp_path / "nowhere" / "hq.db").exists(), made.stderr


def test_missing_sqlite_hq_through_the_console_script(tmp_path: Path) -> None:
    path = _missing_hq(tmp_path)
    out = run_cdx("hq", "enable-tracking", "-t", path, cwd=tmp_path)
    assert_clean_error(out, "nowhere/hq.db does not exist", "fix hq.dsn")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.integration
@pytest.mark.parametrize("command", [["capture"], ["hq", "upload-sink"], ["topology", "apply"]],
                         ids=["capture", "upload-sink", "topology apply"])
def test_roles_and_apply_refuse_a_missing_sqlite_hq(tmp_path: Path, kafka: str, command: list[str]) -> None:
    """Before: capture and the upload sink created an empty HQ and failed on its first table; ``topology
    apply`` created the Kafka topics first."""
    path = _missing_hq(tmp_path, kafka)
    args = [*command, path] if command[0] == "topology" else [*command, "-t", path]
    out = run_cdx(*args, cwd=tmp_path)
    assert out.exit_code == 1 and "Traceback" not in out.stderr, out.stderr
    last = [line for line in out.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "nowhere/hq.db does not exist; fix hq.dsn" in last, out.stderr
    assert not (tmp_path / "nowhere").exists()


def test_tracking_cleanup_before_enable_names_the_command(tmp_path: Path) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    sqlite3.connect(tmp_path / "hq.db").close()
    assert_clean_error(cli("hq", "tracking-cleanup", "-t", path), "change tracking is not enabled",
                       "run `cdx hq enable-tracking` first")


# -- read-only commands create no channel database -------------------------------------------------------
def test_status_and_sessions_create_no_channel_database(tmp_path: Path) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    before = snapshot(tmp_path)
    status = cli("status", "--json", "-t", path)
    assert status.exit_code == 0, status.stderr
    s1 = next(d for d in json.loads(status.stdout)["databases"] if d["owner_id"] == "s1")
    assert s1["reachable"] is True and s1["error"] is None  # not created yet: the sink creates it
    assert_clean_error(cli("channel", "sessions", "-c", "s1", "-t", path), "the database of channel s1",
                       "s1.db does not exist", "run cdx channel init")
    assert snapshot(tmp_path) == before, "no s1.db / s1-pos.db may appear"


@pytest.mark.integration
def test_dlq_list_creates_no_channel_database(tmp_path: Path, kafka: str) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path, kafka=kafka, prefix=f"audit{tmp_path.name[-8:]}"))
    before = snapshot(tmp_path)
    out = cli("dlq", "list", "--json", "-t", path)
    assert out.exit_code == 0 and json.loads(out.stdout) == [], out.stderr
    assert snapshot(tmp_path) == before


# -- topology keys and values ---------------------------------------------------------------------------
def _channel(data: dict[str, Any]) -> dict[str, Any]:
    return data["channel_data_groups"][0]["channels"][0]  # type: ignore[no-any-return]


TOPOLOGY_CASES: list[tuple[str, Any, list[str]]] = [
    ("key of another section", lambda d: _channel(d).update(offline=False),
     ["channels[0].offline: unknown key 'offline' here (it is a key of jobs[], subjobs[])"]),
    ("top-level key in a section", lambda d: d["kafka"].update(jobs=[]),
     ["kafka.jobs: unknown key 'jobs' here (it is a key of the top level"]),
    ("misspelt nested key", lambda d: d["kafka"].update(bootstrap_server="x:1"),
     ["unknown key 'bootstrap_server' (did you mean 'bootstrap_servers'?)"]),
    ("port out of range", lambda d: d["kafka"].update(bootstrap_servers="kafka:99999"),
     ["kafka.bootstrap_servers", "'kafka:99999'", "port must be 1 to 65535"]),
    ("port zero", lambda d: d["kafka"].update(bootstrap_servers="a:9092,b:0"), ["'b:0'", "1 to 65535"]),
    ("empty host", lambda d: d["kafka"].update(bootstrap_servers=":9092"), ["':9092'", "host must not be empty"]),
    ("dsn not a URL", lambda d: d.update(hq={"name": "hq", "dialect": "postgresql", "dsn": "postgresql://u:pw@[bad/x"}),
     ["hq.dsn: dsn is not a valid URL (Invalid IPv6 URL)", "postgresql://user@host:5432/db"]),
    ("dsn port out of range", lambda d: _channel(d).update(database={"dialect": "sqlserver",
                                                                     "dsn": "mssql://sa:pw@h:70000/x"}),
     ["channels[0].database.dsn: dsn is not a valid URL (Port out of range 0-65535)"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in TOPOLOGY_CASES], ids=[c[0] for c in TOPOLOGY_CASES])
def test_invalid_topology_says_how_to_fix(tmp_path: Path, mutate: Any, expected: list[str]) -> None:
    data = base_topology(tmp_path)
    mutate(data)
    path = write(tmp_path / "topology.yaml", data)
    text = assert_clean_error(cli("topology", "validate", path), *expected, max_lines=2)
    assert "(1 problem)" in text and "did you mean 'offline'" not in text and ":pw@" not in text


# -- command options -------------------------------------------------------------------------------------
def _usage_error(out: Outcome, option: str) -> None:
    """typer's own refusal of an option value: exit 2, the option named, no traceback."""
    assert out.exit_code == 2, (out.exit_code, out.stderr, out.stdout)
    assert "Traceback" not in out.stderr + out.stdout
    assert "Invalid value" in out.stderr and option in out.stderr, out.stderr


OPTION_CASES: list[tuple[list[str], str]] = [
    (["channel", "sessions", "-c", "s1", "-n", "-1"], "--limit"),
    (["dlq", "list", "-n", "-1"], "--limit"),
    (["channel", "bootstrap", "-c", "s1", "--batch-size", "0"], "--batch-size"),
    (["replay", "-c", "s1", "--from-beginning", "--batch-size", "0"], "--batch-size"),
    (["replay", "-c", "s1", "--from-beginning", "--timeout", "-1"], "--timeout"),
    (["capture", "resnapshot", "--table", "dbo.PARENT", "--wait", "-3"], "--wait"),
    (["hq", "tracking-cleanup", "--retention-hours", "-5"], "--retention-hours"),
    (["hq", "enable-tracking", "--retention-days", "-1"], "--retention-days"),
    (["hq", "upload-status", "--sessions", "-1"], "--sessions"),
    (["topic", "tail", "bad.x", "--idle-exit", "-1"], "--idle-exit"),
    (["channel", "resync", "-c", "s1", "--wait", "-1"], "--wait"),
    (["demo", "--scale", "-1"], "--scale"),
    (["demo", "--hq-rate", "0"], "--hq-rate"),
    (["demo", "--sales-rate", "0"], "--sales-rate"),
]


@pytest.mark.parametrize(("command", "option"), OPTION_CASES,
                         ids=[" ".join(c[0][:2]) + " " + c[1] for c in OPTION_CASES])
def test_option_out_of_range(tmp_path: Path, command: list[str], option: str) -> None:
    """Before: accepted (a negative limit listed nothing and exited 0; a negative retention would clean up
    entries not captured yet)."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    before = snapshot(tmp_path)
    _usage_error(cli(*command, "-t", path), option)  # demo: refused before it starts Kafka or seeds HQ
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [["channel", "init"], ["channel", "bootstrap"], ["channel", "resync"]],
                         ids=["init", "bootstrap", "resync"])
def test_unknown_channel_before_kafka(tmp_path: Path, command: list[str]) -> None:
    """Before: 'cannot reach Kafka' first (the topology points at a closed port), hiding the typo."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    assert_clean_error(cli(*command, "-c", "nope", "-t", path), "no channel or offline register 'nope'",
                       "known: s1, s1-pos-01")


TABLE_OPTIONS: list[tuple[list[str], str, str]] = [
    (["capture", "resnapshot"], "", "table name must not be empty"),
    (["route", "replay", "--from-offset", "0"], 'x"y', "is not a valid SQL identifier"),
    (["capture", "resnapshot"], "a.b.c", "write 'TABLE' or 'schema.TABLE'"),
]


@pytest.mark.parametrize(("command", "table", "says"), TABLE_OPTIONS, ids=["empty", "quote", "three parts"])
def test_table_option_that_is_no_table_name(tmp_path: Path, command: list[str], table: str, says: str) -> None:
    """Before: 'unexpected ValueError: ... (a bug in cdx: ...)'."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    before = snapshot(tmp_path)
    assert_clean_error(cli(*command, "--table", table, "-t", path), f"--table {table!r}", says,
                       "known HQ tables: dbo.PARENT")
    assert snapshot(tmp_path) == before


@pytest.mark.integration
@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "ack", "--all"]], ids=["list", "ack"])
def test_dlq_unknown_channel(tmp_path: Path, kafka: str, command: list[str]) -> None:
    """Before: ``dlq list -c nope`` printed an empty table and exited 0 (a typo looked like no letters)."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path, kafka=kafka, prefix=f"audit{tmp_path.name[-8:]}"))
    before = snapshot(tmp_path)
    assert_clean_error(cli(*command, "-c", "nope", "-t", path), "no channel or offline register 'nope'",
                       "known: s1, s1-pos-01")
    assert snapshot(tmp_path) == before


def test_dlq_ack_with_kafka_down_is_one_plain_line(tmp_path: Path) -> None:
    """Before: 'cannot reach Kafka at ...: watermarks of bad._dlq: cannot reach Kafka at ...' (nested twice)."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    text = assert_clean_error(cli("dlq", "ack", "--all", "-t", path), "cannot reach Kafka at 127.0.0.1:1",
                              "Connection refused")
    assert text.count("cannot reach Kafka") == 1 and "watermarks" not in text


DEPLOY_CASES: list[tuple[list[str], list[str]]] = [
    (["-f", "strimzi", "--cluster", "bad name!"], ["--cluster 'bad name!' is not a Kubernetes name"]),
    (["-f", "kubernetes", "--namespace", "Bad_NS"], ["--namespace 'Bad_NS'", "lower-case letters"]),
    (["-f", "kubernetes", "--image", ""], ["--image ''", "container image"]),
]


@pytest.mark.parametrize(("args", "expected"), DEPLOY_CASES, ids=["cluster", "namespace", "image"])
def test_deploy_names_kubernetes_refuses(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    assert_clean_error(cli("deploy", "export", *args, "-o", tmp_path / "out", "-t", path), *expected)
    assert not (tmp_path / "out").exists()


def test_deploy_out_is_a_file(tmp_path: Path) -> None:
    """Before: 'cannot access out: File exists'."""
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    (tmp_path / "out").write_text("keep\n")
    before = snapshot(tmp_path)
    assert_clean_error(cli("deploy", "export", "-f", "systemd", "-o", tmp_path / "out", "-t", path),
                       "is a file: give a folder")
    assert snapshot(tmp_path) == before


# -- drivers and side files ------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("pyodbc") is None, reason="pyodbc is not installed")
def test_missing_odbc_driver_in_one_readable_line(tmp_path: Path) -> None:
    """Before: pyodbc's tuple ``('01000', "[01000] [unixODBC][Driver Manager]Can't open lib ..."``, and a
    channel's DSN printed twice."""
    dsn = "DRIVER={ODBC Driver 99 for SQL Server};SERVER=127.0.0.1,1;DATABASE=x;UID=sa;PWD=secret"
    data = base_topology(tmp_path)
    data["hq"] = {"name": "hq", "dialect": "sqlserver", "dsn": dsn}
    _channel(data)["database"] = {"dialect": "sqlserver", "dsn": dsn.replace("DATABASE=x", "DATABASE=s1")}
    path = write(tmp_path / "topology.yaml", data)
    hq = assert_clean_error(cli("hq", "enable-tracking", "-t", path), "the HQ database",
                            "the ODBC driver 'ODBC Driver 99 for SQL Server' is not installed", "odbcinst -q -d")
    channel = assert_clean_error(cli("channel", "sessions", "-c", "s1", "-t", path), "the database of channel s1",
                                 "is not installed")
    assert "secret" not in hq + channel and "[unixODBC]" not in hq + channel
    assert channel.count("DATABASE=s1") == 1


def test_realtime_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    sqlite3.connect(tmp_path / "hq.db").close()
    (tmp_path / "syntax.yaml").write_text("credentials: [\n")
    (tmp_path / "binary.yaml").write_bytes(b"credentials: \xff\n")
    assert_clean_error(cli("realtime", "serve", "-c", tmp_path / "syntax.yaml", "-t", path), "syntax.yaml:2:",
                       "not valid YAML")
    assert_clean_error(cli("realtime", "serve", "-c", tmp_path / "binary.yaml", "-t", path),
                       "binary.yaml is not UTF-8 text", "save it as UTF-8")
    assert_clean_error(cli("realtime", "hash-key", " "), "the API key is empty")


def test_seed_major_version_checked_without_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<RetailCdxSeedData ChannelDBMajorVersion="seven"><Jobs><Job Id="J1"/></Jobs></RetailCdxSeedData>')
    out = cli("seed", "import", bad, "-o", tmp_path / "out.yaml")
    assert_clean_error(out, "bad.xml", "ChannelDBMajorVersion='seven' is not a number", max_lines=2)
    assert not (tmp_path / "out.yaml").exists()
    named = tmp_path / "named.xml"
    named.write_text('<RetailCdxSeedData Name="AX7"><Jobs><Job Id="J1"/></Jobs></RetailCdxSeedData>')
    ok = cli("seed", "import", named, "-o", tmp_path / "out.yaml")
    assert ok.exit_code == 0, ok.stderr
    assert "has no ChannelDBMajorVersion:" in ok.stderr and "has no Name" not in ok.stderr


@pytest.mark.integration
def test_replay_of_a_never_created_channel_creates_nothing(tmp_path: Path, kafka: str) -> None:
    """Before: ``nothing to rewind`` (right) after creating the channel's empty SQLite file (wrong)."""
    subjob = {"id": "Items", "hq_table": "dbo.ITEMS", "fields": ["ID", "CODE"], "scheduled_by": ["1040"]}
    path, topo = write_topology(tmp_path, kafka, [sqlite_db(tmp_path, "s1")], subjobs=[subjob], partitions=1)
    router = FakeRouter(topo, partitions=1)
    columns = (Column("ID", LogicalType.INT64, primary_key=True), Column("CODE", LogicalType.STRING, length=20))
    router.change("ITEMS", "c", {"ID": 1, "CODE": "a"}, columns=columns, subjob="Items")
    router.flush()
    before = snapshot(tmp_path)
    out = cli("replay", "-c", "s1", "--from-beginning", "-t", path)
    assert out.exit_code == 0 and "nothing to rewind" in out.stdout, out.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / "s1.db").exists()


def test_kafka_port_of_another_service_is_one_plain_line(tmp_path: Path) -> None:
    """A port that accepts connections but is no Kafka broker (a typo'd port of another service): before,
    'cannot reach Kafka at X: watermarks of p._dlq: cannot reach Kafka at X: reading the metadata ...'
    with the fix said twice."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def refuse_kafka() -> None:  # accept and hang up: the TCP probe passes, every Kafka request fails
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                continue

    thread = threading.Thread(target=refuse_kafka, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        path = write(tmp_path / "topology.yaml", base_topology(tmp_path, kafka=address))
        text = assert_clean_error(cli("dlq", "list", "-t", path), f"cannot reach Kafka at {address}",
                                  "fix kafka.bootstrap_servers")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert text.count("cannot reach Kafka") == 1 and text.count("fix kafka.bootstrap_servers") == 1, text
