"""Bad-input corpus, files: topology files (syntax, structure, references, ``${VAR}``) and seed XML.

No service is needed: every case fails while reading its input, before anything is opened."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.badinput.helpers import assert_clean_error, base_topology, cli, snapshot, write

SEEDS = Path(__file__).parent.parent / "fixtures" / "seed"
Data = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        from cdx.topology.loader import parse_path

        *head, last = parse_path(path)
        node: Any = data
        for part in head:
            node = node[part]
        node[last] = value

    return mutate


def _drop(key: str) -> Callable[[Data], None]:
    return lambda data: data.pop(key)


# (case id, mutation of the base topology, command after "-t FILE", texts the message must contain)
TOPOLOGY_CASES: list[tuple[str, Callable[[Data], None], list[str], list[str]]] = [
    ("unknown top-level key", _set("kafak", {}), ["topology", "validate"], ["unknown key 'kafak'", "kafka"]),
    ("kafka section missing", _drop("kafka"), ["status"], ["required key 'kafka' is missing"]),
    ("bootstrap servers not host:port", _set("kafka.bootstrap_servers", "localhost"), ["dlq", "list"],
     ["kafka.bootstrap_servers", "host:port"]),
    ("partitions zero", _set("kafka.default_partitions", 0), ["channel", "init"], ["kafka.default_partitions"]),
    ("unknown dialect", _set("hq.dialect", "oracle"), ["hq", "enable-tracking"], ["hq.dialect", "oracle"]),
    ("dsn of another dialect", _set("hq.dsn", "postgresql://hq/db"), ["hq", "tracking-cleanup"],
     ["hq.dsn", "looks like a postgresql DSN"]),
    ("sqlite dsn without three slashes", _set("hq.dsn", "sqlite://hq.db"), ["capture"], ["is not a SQLite DSN"]),
    ("channel dsn empty", _set("channel_data_groups[0].channels[0].database.dsn", ""), ["sink"],
     ["channels[0].database.dsn"]),
    ("unknown job in subjob", _set("subjobs[0].scheduled_by", ["1041"]), ["channel", "sessions", "-c", "s1"],
     ["subjobs[0].scheduled_by[0]", "unknown job '1041'"]),
    ("duplicate subjob id", _set("subjobs[1].id", "parent"), ["channel", "upload"], ["duplicate subjob id"]),
    ("invalid column identifier", _set("subjobs[0].fields[1]", "NAME; DROP TABLE x"), ["topology", "validate"],
     ["subjobs[0].fields[1]", "not a valid SQL identifier"]),
    ("channel database is HQ's", _set("channel_data_groups[0].channels[0].database.dsn", "sqlite:///{tmp}/hq.db"),
     ["channel", "offline-sync"], ["uses the HQ database"]),
    ("register shares the channel database",
     _set("channel_data_groups[0].channels[0].offline_registers[0].database.dsn", "sqlite:///{tmp}/s1.db"),
     ["hq", "upload-sink"], ["needs its own database"]),
    ("upload subjob without counter", lambda d: d["subjobs"][1].pop("replication_counter"), ["hq", "upload-status"],
     ["replication_counter"]),
    ("unknown group in a schedule", _set("distribution_schedules[0].channel_data_groups", ["g9"]),
     ["replay", "-c", "s1", "--from-beginning"],
     ["unknown channel data group 'g9'"]),
    ("missing variable in a dsn", _set("hq.dsn", "sqlite:///${CDX_BADINPUT_UNSET}/hq.db"), ["status"],
     ["environment variable CDX_BADINPUT_UNSET is not set"]),
    ("missing variable in bootstrap servers", _set("kafka.bootstrap_servers", "${CDX_BADINPUT_UNSET}"),
     ["channel", "bootstrap", "-c", "s1"], ["environment variable CDX_BADINPUT_UNSET is not set"]),
    ("unterminated variable reference", _set("kafka.topic_prefix", "${CDX_BADINPUT_UNSET"), ["channel", "resync",
                                                                                               "-c", "s1"],
     ["unterminated '${'"]),
]


@pytest.mark.parametrize(("mutate", "command", "expected"), [c[1:] for c in TOPOLOGY_CASES],
                         ids=[c[0] for c in TOPOLOGY_CASES])
def test_invalid_topology(tmp_path: Path, mutate: Callable[[Data], None], command: list[str],
                          expected: list[str]) -> None:
    data = base_topology(tmp_path)
    mutate(data)
    path = write(tmp_path / "topology.yaml", data)
    path.write_text(path.read_text().replace("{tmp}", str(tmp_path)))
    before = snapshot(tmp_path)
    args = [*command, path] if command[0] == "topology" else [*command, "-t", path]
    text = assert_clean_error(cli(*args), *expected, max_lines=2)
    assert "(1 problem)" in text, "one problem, no follow-on errors"
    assert snapshot(tmp_path) == before


RAW_CASES: list[tuple[str, bytes, list[str]]] = [
    ("invalid YAML", b"kafka: {bootstrap_servers: [x\n", ["topology.yaml:2", "YAML syntax error"]),
    ("top level is a list", b"- kafka\n- hq\n", ["top level must be a mapping"]),
    ("empty file", b"", ["the file is empty"]),
    ("not UTF-8", b"kafka: \xff\xfe\n", ["not UTF-8 text"]),
    ("tab indentation", b"kafka:\n\tbootstrap_servers: x:1\n", ["topology.yaml:2", "\\t"]),
    ("duplicate key", b"version: 1\nversion: 2\n", ["version"]),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_unreadable_topology(tmp_path: Path, raw: bytes, expected: list[str]) -> None:
    path = tmp_path / "topology.yaml"
    path.write_bytes(raw)
    before = snapshot(tmp_path)
    assert_clean_error(cli("status", "-t", path), *expected, max_lines=8)
    assert snapshot(tmp_path) == before


def test_topology_file_missing(tmp_path: Path) -> None:
    assert_clean_error(cli("sink", "-t", tmp_path / "nope.yaml"), "nope.yaml", "not found", "CDX_TOPOLOGY")


def test_topology_is_a_directory(tmp_path: Path) -> None:
    assert_clean_error(cli("hq", "enable-tracking", "-t", tmp_path), "is a directory")


def test_topology_from_environment_missing(tmp_path: Path) -> None:
    out = cli("status", env={"CDX_TOPOLOGY": str(tmp_path / "env.yaml")})
    assert_clean_error(out, "env.yaml", "not found")


def test_command_line_value_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "topology.yaml", base_topology(tmp_path))
    assert_clean_error(cli("dlq", "replay", "-t", path), "give either --all or one or more --offset N")


# -- seed XML ---------------------------------------------------------------------------------------
def _seed(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


SEED_CASES: list[tuple[str, Callable[[Path], list[Any]], list[str]]] = [
    ("seed file missing", lambda t: [t / "missing.xml"], ["missing.xml"]),
    ("malformed XML", lambda t: [shutil.copy(SEEDS / "malformed.xml", t / "m.xml")], ["m.xml"]),
    ("wrong root element", lambda t: [_seed(t, "r.xml", "<Topology/>")], ["r.xml", "RetailCdxSeedData"]),
    ("empty seed file", lambda t: [_seed(t, "e.xml", "")], ["e.xml"]),
    ("binary seed file", lambda t: [_seed(t, "b.xml", b"\x00\x01\x02PK\x03\x04")], ["b.xml"]),
    ("field without name", lambda t: [_seed(t, "f.xml", '<RetailCdxSeedData><Subjobs><Subjob Id="S" AxTableName="T">'
                                                       '<AxFields><Field/></AxFields></Subjob></Subjobs>'
                                                       '</RetailCdxSeedData>')], ["f.xml"]),
    ("seed file is a directory", lambda t: [t], ["directory"]),
]


@pytest.mark.parametrize(("files", "expected"), [c[1:] for c in SEED_CASES], ids=[c[0] for c in SEED_CASES])
def test_invalid_seed(tmp_path: Path, files: Callable[[Path], list[Any]], expected: list[str]) -> None:
    inputs = files(tmp_path)
    before = snapshot(tmp_path)
    out = cli("seed", "import", *inputs, "-o", tmp_path / "out.yaml")
    assert_clean_error(out, *expected, max_lines=12)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out.yaml").exists()


def test_seed_output_exists(tmp_path: Path) -> None:
    target = _seed(tmp_path, "topology.yaml", "keep: me\n")
    before = snapshot(tmp_path)
    assert_clean_error(cli("seed", "import", SEEDS / "base.xml", "-o", target), "exists", "--force")
    assert snapshot(tmp_path) == before


def test_seed_replace_without_into(tmp_path: Path) -> None:
    assert_clean_error(cli("seed", "import", SEEDS / "base.xml", "--replace", "-o", tmp_path / "o.yaml"),
                       "--replace needs --into")
    assert not (tmp_path / "o.yaml").exists()


def test_seed_into_invalid_topology(tmp_path: Path) -> None:
    into = _seed(tmp_path, "topology.yaml", "kafka: [\n")
    before = snapshot(tmp_path)
    assert_clean_error(cli("seed", "import", SEEDS / "base.xml", "--into", into), "topology.yaml", max_lines=6)
    assert snapshot(tmp_path) == before


def test_seed_output_not_writable(tmp_path: Path) -> None:
    assert_clean_error(cli("seed", "import", SEEDS / "base.xml", "-o", "/proc/cdx-badinput.yaml"),
                       "cannot write", "/proc/cdx-badinput.yaml")
