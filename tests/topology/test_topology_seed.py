"""Seed-data import: the reference scenarios, every element and attribute, CDX's merge rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdx.topology import SeedError, Topology
from cdx.topology.seed_output import import_seed
from cdx.topology.seed_xml import parse_seed

ENV: dict[str, str] = {}


@pytest.fixture
def seed_dir(fixtures_dir: Path) -> Path:
    return fixtures_dir / "seed"


def run(*files: Path | str, **kwargs: Any) -> Topology:
    return import_seed([Path(f) for f in files], environ=ENV, **kwargs).topology


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def seed_xml(body: str) -> str:
    head = '<?xml version="1.0"?>\n<RetailCdxSeedData Name="AX7" ChannelDBSchema="ext">'
    return f"{head}\n{body}\n</RetailCdxSeedData>\n"


def errors_of(*files: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(SeedError) as info:
        import_seed(list(files), environ=ENV, **kwargs)
    return [str(i) for i in info.value.issues]


# -- the scenarios of the CDX extension documentation ---------------------------------------------
def test_base_alone(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml")
    assert [j.id for j in topo.jobs] == ["1010", "1070", "1110", "P-1000"]
    assert topo.job("P-1000").direction.value == "upload"  # type: ignore[union-attr]
    cust = topo.subjob("RetailCustTable")
    assert cust is not None and str(cust.hq_table) == "CUSTTABLE" and cust.channel_table is None
    assert str(cust.target) == "ax.CUSTTABLE"
    trans = topo.subjob("RetailTransactionTable")
    assert trans is not None and trans.is_upload and trans.replication_counter == "REPLICATIONCOUNTERFROMORIGIN"
    # placeholders make a complete, valid topology
    assert [g.id for g in topo.channel_data_groups] == ["default"]
    assert [d.id for d in topo.distribution_schedules] == ["ALL-DOWNLOAD", "ALL-UPLOAD"]


def test_new_table_with_new_download_job(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml", seed_dir / "new-download-job.xml")
    job = topo.job("7000")
    assert job is not None and job.description == "Seating layouts" and job.direction.value == "download"
    sub = topo.subjob("FabrikamSeatingLayout")
    assert sub is not None
    assert str(sub.target) == "ext.FabrikamSeatingLayout"
    assert [f.name for f in sub.fields] == ["seatNumber", "capacity", "channelRecId", "RecId"]
    assert sub.scheduled_by == ("7000",)
    assert [g.id for g in topo.groups_for_subjob(sub)] == ["default"]


def test_new_upload_table_on_existing_pull_job(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml", seed_dir / "new-upload-table.xml")
    sub = topo.subjob("FabrikamTableReservation")
    assert sub is not None and sub.is_upload
    assert sub.replication_counter == "ReplicationCounterFromOrigin"
    assert sub.scheduled_by == ("P-1000",)
    assert len(sub.fields) == 8


def test_push_unmapped_columns_to_extension_tables(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml", seed_dir / "push-unmapped-columns.xml")
    chan = topo.subjob("RetailChannelTable")
    assert chan is not None and chan.extension is not None
    assert [f.name for f in chan.fields] == ["RECID", "CHANNELTYPE", "INVENTLOCATION"]  # the base mapping stays
    assert str(chan.extension.target) == "ext.RETAILCHANNELTABLE"
    assert [f.name for f in chan.extension.fields] == ["Payment", "PaymMode", "FabrikamWelcomeMessage"]
    assert chan.scheduled_by == ("1070",)  # AxTableName and jobs inferred from the base
    cust = topo.subjob("RetailCustTable")
    assert cust is not None and cust.extension is not None
    assert [f.name for f in cust.extension.fields] == ["ReturnTaxGroup_W", "FabrikamLoyaltyTier"]


def test_pull_extension_columns_of_existing_upload_table(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml", seed_dir / "pull-extension-columns.xml")
    trans = topo.subjob("RetailTransactionTable")
    assert trans is not None and trans.extension is not None
    assert str(trans.extension.target) == "ext.FABRIKAMTRANSACTIONTABLE"
    assert trans.extension.override_target is False
    assert [f.name for f in trans.extension.fields] == ["FabrikamTableNumber", "FabrikamWaiterId"]
    assert trans.scheduled_by == ("P-1000",)
    assert str(trans.hq_table) == "RETAILTRANSACTIONTABLE"


def test_move_subjob_to_another_job(seed_dir: Path) -> None:
    topo = run(seed_dir / "base.xml", seed_dir / "move-subjob.xml")
    party = topo.subjob("DirPartyTable")
    assert party is not None and party.scheduled_by == ("1110",)
    assert len(party.fields) == 3


def test_template_is_rejected_with_its_line(seed_dir: Path) -> None:
    assert errors_of(seed_dir / "template.xml") == [f"{seed_dir / 'template.xml'}:4: <Subjob> needs an Id attribute"]


def test_all_reference_scenarios_together(seed_dir: Path) -> None:
    names = ["base.xml", "new-download-job.xml", "new-upload-table.xml", "push-unmapped-columns.xml",
             "pull-extension-columns.xml", "move-subjob.xml"]
    result = import_seed([seed_dir / n for n in names], environ=ENV)
    assert len(result.topology.subjobs) == 6 and result.warnings == []
    assert result.text.startswith("# Generated by `cdx seed import` from: base.xml, new-download-job.xml")


# -- every element and attribute --------------------------------------------------------------------------
def test_every_element_and_attribute(seed_dir: Path) -> None:
    topo = run(seed_dir / "every-element.xml")
    assert [(j.id, j.direction.value, j.description) for j in topo.jobs] == [
        ("8000", "download", "Gift registry"), ("P-8000", "upload", "Gift registry upload")]
    reg = topo.subjob("FabrikamGiftRegistry")
    assert reg is not None
    assert reg.description == "Gift registries"
    assert str(reg.hq_table) == "dbo.FABRIKAMGIFTREGISTRY"
    assert str(reg.target) == "ext.GIFTREGISTRY"
    assert reg.channel_columns() == [("REGISTRYID", "REGISTRYID"), ("OWNERNAME", "OWNER"),
                                     ("EVENTDATE", "EVENTDAY"), ("RECID", "RECID")]
    purchase = topo.subjob("FabrikamGiftRegistryPurchase")
    assert purchase is not None and purchase.is_upload
    assert purchase.replication_counter == "REPLICATIONCOUNTERFROMORIGIN"
    assert ("QTY", "QUANTITY") in purchase.channel_columns()


def test_every_element_with_its_extension(seed_dir: Path) -> None:
    topo = run(seed_dir / "every-element.xml", seed_dir / "every-element-extension.xml")
    reg = topo.subjob("FabrikamGiftRegistry")
    assert reg is not None and reg.scheduled_by == ("8001",)  # moved to the new job
    assert reg.fields[-1].name == "REGISTRYTYPE"
    purchase = topo.subjob("FabrikamGiftRegistryPurchase")
    assert purchase is not None and purchase.extension is not None
    assert purchase.extension.override_target is True
    assert str(purchase.extension.target) == "ext.GIFTREGISTRYPURCHASEEXT"
    assert purchase.extension.channel_columns() == [("GIFTMESSAGE", "MESSAGE")]
    assert topo.job("8001") is not None


def test_parser_reads_containers_and_case_insensitive_names() -> None:
    seed = parse_seed(
        '<retailcdxseeddata channeldbschema="ext"><jobs><job id="1" /></jobs>'
        '<subjobs><subjob id="S" axtablename="T"><scheduledbyjob>1</scheduledbyjob>'
        '<field name="A" toname="B"/></subjob></subjobs></retailcdxseeddata>', "x.xml")
    assert seed.channel_db_schema == "ext"
    assert seed.jobs[0].id == "1"
    sub = seed.subjobs[0]
    assert sub.scheduled_by is not None and sub.scheduled_by[0][0] == "1"
    assert (sub.fields[0].name, sub.fields[0].to_name) == ("A", "B")


# -- errors ---------------------------------------------------------------------------------------------
def test_malformed_xml_reports_the_line(seed_dir: Path) -> None:
    errs = errors_of(seed_dir / "malformed.xml")
    assert len(errs) == 1
    assert errs[0].startswith(f"{seed_dir / 'malformed.xml'}:6: malformed XML: mismatched tag")


ERROR_CASES: list[tuple[str, str, str]] = [
    ("dataareaid", '<Job Id="1"/><Subjob Id="S" AxTableName="T"><ScheduledByJob>1</ScheduledByJob>\n'
                   '<Field Name="A"/>\n<Field Name="DataAreaId"/></Subjob>',
     ":5: field 'DataAreaId' maps DATAAREAID explicitly; remove it"),
    ("missing AxTableName", '<Job Id="1"/>\n<Subjob Id="S"><Field Name="A"/></Subjob>',
     ":4: AxTableName is required: no earlier file defines subjob 'S'"),
    ("unknown job", '<Subjob Id="S" AxTableName="T">\n<ScheduledByJob>42</ScheduledByJob><Field Name="A"/></Subjob>',
     ":4: subjob 'S' is scheduled by unknown job '42'"),
    ("no fields", '<Job Id="1"/>\n<Subjob Id="S" AxTableName="T"><ScheduledByJob>1</ScheduledByJob></Subjob>',
     ":4: subjob 'S' maps no fields"),
    ("not scheduled", '<Job Id="1"/>\n<Subjob Id="S" AxTableName="T"><Field Name="A"/></Subjob>',
     ":4: subjob 'S' is not scheduled by any job"),
    ("upload without counter", '<Job Id="P"/>\n<Subjob Id="S" AxTableName="T" IsUpload="true">'
                               '<ScheduledByJob>P</ScheduledByJob><Field Name="A"/></Subjob>',
     ":4: upload subjob 'S' needs ReplicationCounterFieldName"),
    ("duplicate subjob in one file", '<Job Id="1"/><Subjob Id="S" AxTableName="T"><ScheduledByJob>1</ScheduledByJob>'
                                     '<Field Name="A"/></Subjob>\n<Subjob Id="S"><Field Name="B"/></Subjob>',
     ":4: subjob 'S' is declared twice in this file"),
    ("duplicate job in one file", '<Job Id="1"/>\n<Job Id="1"/>', ":4: job '1' is declared twice in this file"),
    ("bad boolean", '<Job Id="1"/>\n<Subjob Id="S" AxTableName="T" IsUpload="yes"/>',
     ":4: IsUpload='yes' is not a boolean"),
    ("bad identifier", '<Job Id="1"/><Subjob Id="S" AxTableName="T"><ScheduledByJob>1</ScheduledByJob>\n'
                       '<Field Name="A B"/></Subjob>', ":4: 'A B' is not a valid SQL identifier"),
    ("bad table name", '<Job Id="1"/>\n<Subjob Id="S" AxTableName="a.b.c"/>', ":4: 'a.b.c' is not a table name"),
    ("bad job id", '<Job Id="a job"/>', ":3: 'a job' cannot be used in a Kafka topic name"),
    ("empty ScheduledByJob", '<Job Id="1"/><Subjob Id="S" AxTableName="T">\n<ScheduledByJob> </ScheduledByJob>'
                             '<Field Name="A"/></Subjob>', ":4: <ScheduledByJob> is empty"),
    ("Field without Name", '<Job Id="1"/><Subjob Id="S" AxTableName="T">\n<Field ToName="A"/></Subjob>',
     ":4: <Field> needs a Name attribute"),
    ("OverrideTarget on a new subjob", '<Job Id="1"/>\n<Subjob Id="S" AxTableName="T" OverrideTarget="true">'
                                       '<ScheduledByJob>1</ScheduledByJob><Field Name="A"/></Subjob>',
     ":4: OverrideTarget only applies when extending"),
    ("download subjob on upload job", '<Job Id="P" IsUpload="true"/>\n<Subjob Id="S" AxTableName="T">'
                                      '<ScheduledByJob>P</ScheduledByJob><Field Name="A"/></Subjob>',
     ":4: subjobs[0].scheduled_by[0]: download subjob 'S' is scheduled by upload job 'P'"),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_seed_errors(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "bad.xml", seed_xml(body))
    errs = errors_of(path)
    assert any(e.startswith(str(path)) and expected in e for e in errs), errs


EXTENSION_ERRORS: list[tuple[str, str, str]] = [
    ("new subjob on an already-mapped table", '<Subjob Id="MyCust" AxTableName="CUSTTABLE">'
                                              '<ScheduledByJob>1010</ScheduledByJob><Field Name="X"/></Subjob>',
     "new subjob 'MyCust' maps table 'CUSTTABLE', already mapped by subjob 'RetailCustTable' ("),
    ("extension changes AxTableName", '<Subjob Id="RetailCustTable" AxTableName="VENDTABLE"/>',
     "AxTableName 'VENDTABLE' differs from 'CUSTTABLE' of subjob 'RetailCustTable'"),
    ("extension changes direction", '<Subjob Id="RetailCustTable" IsUpload="true"/>',
     "IsUpload=true contradicts subjob 'RetailCustTable'"),
    ("field remapped", '<Subjob Id="RetailCustTable"><Field Name="CUSTGROUP" ToName="GRP"/></Subjob>',
     "field 'CUSTGROUP' is already mapped to 'CUSTGROUP' in subjob 'RetailCustTable'"),
    ("OverrideTarget without a table", '<Subjob Id="RetailTransactionTable" OverrideTarget="true"/>',
     "OverrideTarget needs TargetTableName/TargetTableSchema"),
]


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in EXTENSION_ERRORS],
                         ids=[c[0] for c in EXTENSION_ERRORS])
def test_extension_errors(seed_dir: Path, tmp_path: Path, body: str, expected: str) -> None:
    ext = write(tmp_path, "ext.xml", seed_xml(body))
    errs = errors_of(seed_dir / "base.xml", ext)
    assert any(e.startswith(f"{ext}:3: ") and expected in e for e in errs), errs


def test_second_extension_table_is_an_error(seed_dir: Path, tmp_path: Path) -> None:
    one = write(tmp_path, "one.xml", seed_xml('<Subjob Id="RetailCustTable" TargetTableName="A"'
                                              ' TargetTableSchema="ext">'
                                              '<Field Name="X"/></Subjob>'))
    two = write(tmp_path, "two.xml", seed_xml('<Subjob Id="RetailCustTable" TargetTableName="B"'
                                              ' TargetTableSchema="ext">'
                                              '<Field Name="Y"/></Subjob>'))
    errs = errors_of(seed_dir / "base.xml", one, two)
    assert any("already has extension table 'ext.A'" in e and e.startswith(f"{two}:3:") for e in errs), errs


def test_errors_of_several_files_are_collected(seed_dir: Path, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.xml", "<RetailCdxSeedData><Subjob></RetailCdxSeedData>")
    errs = errors_of(seed_dir / "malformed.xml", bad, seed_dir / "template.xml")
    assert len(errs) == 3


def test_warnings_for_unknown_and_repeated_things(seed_dir: Path, tmp_path: Path) -> None:
    ext = write(tmp_path, "ext.xml", seed_xml('<Subjob Id="RetailCustTable" Color="red"><Field Name="PARTY"/>'
                                              '<Note/></Subjob><Extra/>'))
    result = import_seed([seed_dir / "base.xml", ext], environ=ENV)
    messages = [i.message for i in result.warnings]
    assert "unknown attribute 'Color' on <Subjob> ignored" in messages
    assert "unknown element <Note> in <Subjob> ignored" in messages
    assert "unknown element <Extra> ignored" in messages
    assert any("field 'PARTY' is already mapped in subjob 'RetailCustTable'" in m for m in messages)


@pytest.mark.parametrize(("body", "message"), [
    ("<NotSeed/>", "the root element is <NotSeed>, expected <RetailCdxSeedData>"),
    ('<!DOCTYPE x [<!ENTITY a "b">]><RetailCdxSeedData/>', "DTDs and entity declarations are not allowed"),
    ("", "malformed XML: no element found"),
])
def test_unusable_files(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "x.xml", body)
    errs = errors_of(path)
    assert any(message in e for e in errs), errs


def test_missing_file(tmp_path: Path) -> None:
    errs = errors_of(tmp_path / "nope.xml")
    assert errs and "cannot read seed file" in errs[0]


# -- --into ---------------------------------------------------------------------------------------------
def test_into_merges_and_keeps_the_rest(tmp_path: Path, minimal: Callable[[], dict[str, Any]],
                                        to_yaml: Callable[[Any], str]) -> None:
    into = write(tmp_path, "topology.yaml", "# my retailer\n" + to_yaml(minimal()))
    ext = write(tmp_path, "ext.xml", seed_xml(
        '<Subjob Id="InventTable"><Field Name="PRIMARYVENDORID" ToName="VENDOR"/></Subjob>'
        '<Subjob Id="RetailChannelTable"><Field Name="CURRENCY"/></Subjob>'))
    result = import_seed([ext], into=into, environ=ENV)
    assert result.text.startswith("# my retailer\n")
    topo = result.topology
    inv = topo.subjob("InventTable")
    assert inv is not None and inv.channel_columns()[-1] == ("PRIMARYVENDORID", "VENDOR")
    chan = topo.subjob("RetailChannelTable")
    assert chan is not None and chan.channel_filter is not None  # topology-only settings survive
    assert [g.id for g in topo.channel_data_groups] == ["g1", "g2"]


def test_into_replace_carries_over_topology_only_settings(tmp_path: Path, minimal: Callable[[], dict[str, Any]],
                                                         to_yaml: Callable[[Any], str]) -> None:
    into = write(tmp_path, "topology.yaml", to_yaml(minimal()))
    base = write(tmp_path, "base.xml", seed_xml(
        '<Job Id="1040"/><Job Id="1070"/><Job Id="P-0001" IsUpload="true"/>'
        '<Subjob Id="RetailChannelTable" AxTableName="dbo.RETAILCHANNELTABLE"><ScheduledByJob>1070</ScheduledByJob>'
        '<Field Name="RECID"/></Subjob>'))
    topo = run(base, into=into, replace=True)
    assert [s.id for s in topo.subjobs] == ["RetailChannelTable"]
    chan = topo.subjob("RetailChannelTable")
    assert chan is not None and chan.channel_filter is not None and chan.channel_filter.column == "RECID"


def test_into_reports_result_problems(tmp_path: Path, minimal: Callable[[], dict[str, Any]],
                                      to_yaml: Callable[[Any], str]) -> None:
    into = write(tmp_path, "topology.yaml", to_yaml(minimal()))
    base = write(tmp_path, "base.xml", seed_xml('<Job Id="9"/>'))
    errs = errors_of(base, into=into, replace=True)  # schedules now name jobs that no longer exist
    assert any("unknown job '1040'" in e for e in errs), errs
