"""The seed-data side of the extension rules: ``cdx seed import`` and ``cdx topology validate``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdx.cli.main import app
from cdx.topology.dump import dump_topology
from cdx.topology.issues import SeedError, TopologyError
from cdx.topology.seed_output import import_seed
from tests.migrate.helpers import topology

FIXTURES = Path(__file__).parents[1] / "fixtures" / "seed"
ENV = {"CDX_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def _ext(tmp: Path, name: str, head: str, body: str) -> Path:
    path = tmp / name
    path.write_text(f'<?xml version="1.0"?>\n<RetailCdxSeedData {head}>\n{body}\n</RetailCdxSeedData>\n',
                    encoding="utf-8")
    return path


COLUMNS = '<Subjob Id="RetailCustTable" TargetTableName="CONTOSOCUST" TargetTableSchema="{schema}">' \
          '<Field Name="CONTOSOSEGMENT"/></Subjob>'


def test_extension_of_the_same_seed_data_version_is_imported_and_recorded(tmp_path: Path) -> None:
    ext = _ext(tmp_path, "ext.xml", 'Name="AX7" ChannelDBSchema="ext" ChannelDBMajorVersion="7"',
               COLUMNS.format(schema="ext"))
    result = import_seed([FIXTURES / "base.xml", ext], environ=ENV)
    assert result.topology.extensions.seed_data is not None
    assert result.topology.extensions.seed_data.channel_db_major_version == "7"
    assert "seed_data: {name: AX7, channel_db_major_version: '7'}" in result.text


def test_n_minus_1_extension_is_refused(tmp_path: Path) -> None:
    ext = _ext(tmp_path, "ext-n1.xml", 'Name="AX6" ChannelDBSchema="ext" ChannelDBMajorVersion="6"',
               COLUMNS.format(schema="ext"))
    with pytest.raises(SeedError) as info:
        import_seed([FIXTURES / "base.xml", ext], environ=ENV)
    (issue,) = info.value.issues
    assert str(issue).startswith(f"{ext}:2:")
    assert "applies only to the seed data version it extends (N / N-1)" in issue.message


def test_n_minus_1_extension_is_refused_against_a_recorded_topology(tmp_path: Path) -> None:
    first = import_seed([FIXTURES / "base.xml"], environ=ENV)
    into = tmp_path / "topology.yaml"
    into.write_text(first.text, encoding="utf-8")
    ext = _ext(tmp_path, "ext-n1.xml", 'Name="AX6" ChannelDBMajorVersion="6"', COLUMNS.format(schema="ext"))
    with pytest.raises(SeedError, match="the topology"):
        import_seed([ext], into=into, environ=ENV)


def test_extension_tables_only_in_ext_at_seed_import(tmp_path: Path) -> None:
    ext = _ext(tmp_path, "ext.xml", 'Name="AX7" ChannelDBMajorVersion="7"', COLUMNS.format(schema="crt"))
    with pytest.raises(SeedError, match=r'extension table crt.CONTOSOCUST .* set TargetTableSchema="ext"'):
        import_seed([FIXTURES / "base.xml", ext], environ=ENV)


def test_extension_tables_only_in_extension_schemas_at_topology_validate(tmp_path: Path) -> None:
    text = dump_topology(topology(tmp_path)).replace("ext.CONTOSOINVENTTABLE", "ax.CONTOSOINVENTTABLE")
    path = tmp_path / "topology.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["topology", "validate", str(path)])
    assert result.exit_code == 1
    assert "extension table 'ax.CONTOSOINVENTTABLE' is not in an extension schema" in result.output
    with pytest.raises(TopologyError, match="not in an extension schema; put it in contoso"):
        topology(tmp_path, schemas=["contoso"])


def test_validate_databases_compares_deployed_extension_keys(tmp_path: Path) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(dump_topology(topology(tmp_path)), encoding="utf-8")
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        conn.execute("CREATE TABLE ax_INVENTTABLE (ITEMID TEXT NOT NULL, DATAAREAID TEXT NOT NULL,"
                     " PRIMARY KEY (ITEMID, DATAAREAID))")
        conn.execute("CREATE TABLE ext_CONTOSOINVENTTABLE (ITEMID TEXT NOT NULL PRIMARY KEY)")
    result = CliRunner().invoke(app, ["topology", "validate", str(path), "--databases"])
    assert result.exit_code == 1
    assert "store-1: extension table ext.CONTOSOINVENTTABLE has primary key (ITEMID), its parent" in result.output
    with sqlite3.connect(tmp_path / "store-1.db") as conn:
        conn.execute("DROP TABLE ext_CONTOSOINVENTTABLE")
        conn.execute("CREATE TABLE ext_CONTOSOINVENTTABLE (ITEMID TEXT NOT NULL, DATAAREAID TEXT NOT NULL,"
                     " PRIMARY KEY (DATAAREAID, ITEMID))")
    result = CliRunner().invoke(app, ["topology", "validate", str(path), "--databases"])
    assert result.exit_code == 0, result.output


def test_major_version_must_be_a_number(tmp_path: Path) -> None:
    ext = _ext(tmp_path, "ext.xml", 'Name="AX7" ChannelDBMajorVersion="seven"', COLUMNS.format(schema="ext"))
    with pytest.raises(SeedError, match="ChannelDBMajorVersion='seven' is not a number"):
        import_seed([FIXTURES / "base.xml", ext], environ=ENV)


def test_topology_diff_explains_extension_changes(tmp_path: Path) -> None:
    from cdx.topology.diff import diff_topologies

    old = topology(tmp_path)
    new = topology(tmp_path, scripts="db/extensions", roles={"users": "UsersRole"})
    changes = {c.summary: c.action for c in diff_topologies(old, new)}
    assert "run `cdx channel migrate --all`" in changes["extension scripts none -> db/extensions"]
    assert "extension roles changed" in changes
