"""``diff_topologies``: what a change to topology.yaml means operationally."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdx.topology.diff import Change, diff_topologies
from cdx.topology.loader import validate_topology

Data = dict[str, Any]


def diff(minimal: Callable[[], Data], edit: Callable[[Data], None]) -> list[Change]:
    old = minimal()
    new = minimal()
    edit(new)
    return diff_topologies(validate_topology(old), validate_topology(new))


def find(changes: list[Change], category: str, text: str) -> Change:
    for change in changes:
        if change.category == category and text in change.summary:
            return change
    raise AssertionError(f"no {category} change with {text!r}: {changes}")


def test_no_change(minimal: Callable[[], Data]) -> None:
    assert diff(minimal, lambda d: None) == []


def test_channel_added_needs_bootstrap(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        d["channel_data_groups"][0]["channels"].append(
            {"id": "s3", "database": {"dsn": "sqlite:///s3.db"}, "attributes": {"recid": 3}})

    change = find(diff(minimal, edit), "channels", "channel 's3' added (group 'g1')")
    assert change.needs_bootstrap and "2 tables of group 'g1'" in change.action


def test_channel_removed_and_register_added(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        d["channel_data_groups"][1]["channels"][0]["offline_registers"] = [
            {"id": "s2-pos", "database": {"dsn": "sqlite:///s2-pos.db"}}]
        d["channel_data_groups"][0]["channels"][0]["offline_registers"] = []

    changes = diff(minimal, edit)
    assert find(changes, "channels", "offline register 's2-pos' added").needs_bootstrap
    assert "no longer updated" in find(changes, "channels", "offline register 's1-pos' removed").action


def test_channel_moved_between_groups(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        chan = d["channel_data_groups"][0]["channels"].pop(0)
        d["channel_data_groups"][1]["channels"].append(chan)

    assert find(diff(minimal, edit), "channels", "channel 's1' moved from group 'g1' to 'g2'").needs_bootstrap


def test_field_added_and_renamed(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        d["subjobs"][0]["fields"] = ["ITEMID", {"name": "NAMEALIAS", "to_name": "SEARCHNAME"}, "RECID", "ITEMTYPE"]

    changes = diff(minimal, edit)
    added = find(changes, "schema", "ax.INVENTTABLE: field ITEMTYPE added")
    assert "channel schema change: add column ITEMTYPE" in added.action and added.needs_bootstrap
    renamed = find(changes, "schema", "field NAMEALIAS renamed NAMEALIAS -> SEARCHNAME")
    assert "rename column" in renamed.action


def test_field_removed(minimal: Callable[[], Data]) -> None:
    changes = diff(minimal, lambda d: d["subjobs"][0]["fields"].remove("NAMEALIAS"))
    assert "no longer updated" in find(changes, "schema", "field NAMEALIAS removed").action


def test_subjob_moved_between_jobs_changes_routing(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        d["jobs"].append({"id": "1050", "direction": "download"})
        d["distribution_schedules"].append({"id": "G1ONLY", "direction": "download", "jobs": ["1050"],
                                            "channel_data_groups": ["g1"]})
        d["subjobs"][0]["scheduled_by"] = ["1050"]

    changes = diff(minimal, edit)
    find(changes, "routing", "subjob 'InventTable' moved from jobs 1040 to 1050")
    lost = find(changes, "routing", "dbo.INVENTTABLE no longer reaches g2")
    assert "no longer updated" in lost.action
    find(changes, "jobs", "download job '1050' added")
    find(changes, "schedules", "download schedule 'G1ONLY' added")


def test_table_added_and_removed(minimal: Callable[[], Data]) -> None:
    def edit(d: Data) -> None:
        d["subjobs"][0] = {"id": "EcoResProduct", "hq_table": "dbo.ECORESPRODUCT", "fields": ["RECID"],
                           "scheduled_by": ["1040"]}

    changes = diff(minimal, edit)
    added = find(changes, "tables", "table dbo.ECORESPRODUCT added")
    assert "ax.ECORESPRODUCT" in added.action and "g1, g2" in added.action and added.needs_bootstrap
    find(changes, "tables", "table dbo.INVENTTABLE removed")


def test_group_gets_a_table_through_a_schedule(minimal: Callable[[], Data]) -> None:
    old = minimal()
    old["distribution_schedules"][0]["channel_data_groups"] = ["g1"]
    old["subjobs"][1].pop("channel_filter")
    new = minimal()
    new["subjobs"][1].pop("channel_filter")
    changes = diff_topologies(validate_topology(old), validate_topology(new))
    gained = find(changes, "routing", "dbo.INVENTTABLE now reaches g2")
    assert gained.action == "bootstrap ax.INVENTTABLE in the channels of g2"
    find(changes, "schedules", "schedule 'DL' changed")


@pytest.mark.parametrize(("edit", "category", "text"), [
    (lambda d: d["kafka"].update(topic_prefix="cdx2"), "kafka", "topic prefix 't' -> 'cdx2'"),
    (lambda d: d["hq"].update(dsn="sqlite:///other.db"), "hq", "HQ database changed"),
    (lambda d: d["channel_data_groups"][0]["legal_entities"].append("usmf"), "groups",
     "group 'g1' gains legal entities usmf"),
    (lambda d: d["channel_data_groups"][0]["channels"][0]["attributes"].update(recid=9), "channels",
     "channel 's1' attributes changed"),
    (lambda d: d["channel_data_groups"][0]["channels"][0]["database"].update(dsn="sqlite:///new.db"), "channels",
     "channel 's1' has a new database"),
    (lambda d: d["subjobs"][2].update(extension={"table": "ext.X", "fields": ["SEAT"]}), "schema",
     "extension table ext.X added"),
    (lambda d: d["subjobs"][1].update(channel_filter={"column": "CHANNELTYPE", "attribute": "recid"}), "routing",
     "channel filter changed"),
])
def test_other_changes(minimal: Callable[[], Data], edit: Callable[[Data], None], category: str, text: str) -> None:
    find(diff(minimal, edit), category, text)
