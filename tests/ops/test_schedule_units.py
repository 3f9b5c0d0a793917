"""Distribution schedules and ``offline: false`` in the topology: parsing, windows crossing midnight, interval
ticks, and clear errors (path + how to fix). Pure: no broker, no database."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from cdx.topology import Topology, TopologyError, parse_topology
from cdx.topology.operations import offline_excluded, schedules_for
from cdx.topology.schedule import parse

BASE = """
kafka: {{bootstrap_servers: "127.0.0.1:9092"}}
hq: {{name: hq, dialect: sqlite, dsn: "sqlite:///hq.db"}}
jobs:
  - {{id: "1040", direction: download{job_offline}}}
  - {{id: "1020", direction: download}}
  - {{id: P-0001, direction: upload}}
subjobs:
  - {{id: Items, hq_table: dbo.INVENTTABLE, fields: [ITEMID], scheduled_by: ["1040"]{sub_offline}}}
  - {{id: Prices, hq_table: dbo.PRICEDISCTABLE, fields: [RECID], scheduled_by: ["1020", "1040"]}}
channel_data_groups:
  - id: g1
    legal_entities: [usrt]
    channels:
      - {{id: s1, database: {{dialect: sqlite, dsn: "sqlite:///s1.db"}}}}
distribution_schedules:
  - {{id: DL, direction: download, jobs: ["1040"], channel_data_groups: [g1]{schedule}}}
  - {{id: NIGHT, direction: download, jobs: ["1020"], channel_data_groups: [g1], schedule: "22:00-06:00"}}
  - {{id: UP, direction: upload, jobs: [P-0001], channel_data_groups: [g1]{up_schedule}}}
"""


def topo(schedule: str = "", job_offline: str = "", sub_offline: str = "", up_schedule: str = "") -> Topology:
    return parse_topology(BASE.format(schedule=schedule, job_offline=job_offline, sub_offline=sub_offline,
                                      up_schedule=up_schedule), environ={})


def at(text: str, zone: str = "UTC") -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def test_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    plan = parse(("Mon-Fri 22:00-06:00",))
    # 2026-12-04 is a Friday
    assert plan.open_at(at("2026-12-04T22:00"), "UTC")
    assert plan.open_at(at("2026-12-05T05:59"), "UTC")  # Saturday morning: Friday's window
    assert not plan.open_at(at("2026-12-05T06:00"), "UTC")
    assert not plan.open_at(at("2026-12-05T22:30"), "UTC")  # Saturday evening
    assert not plan.open_at(at("2026-12-07T05:00"), "UTC")  # Monday early: Sunday opened nothing
    assert not plan.open_at(at("2026-12-04T21:59"), "UTC")


def test_windows_are_read_in_the_schedules_time_zone() -> None:
    plan = parse(("Mon-Fri 22:00-06:00",))
    # 21:30 UTC is 22:30 in Berlin (winter)
    assert plan.open_at(at("2026-12-02T21:30"), "Europe/Berlin")
    assert not plan.open_at(at("2026-12-02T21:30"), "UTC")


def test_lists_day_lists_wrapping_ranges_and_daily() -> None:
    plan = parse(("Sat,Sun 08:00-10:00", "Fri-Mon 12:00-13:00"))
    assert plan.open_at(at("2026-12-06T09:00"), "UTC")  # Sunday
    assert not plan.open_at(at("2026-12-03T09:00"), "UTC")  # Thursday
    assert plan.open_at(at("2026-12-07T12:30"), "UTC")  # Monday, in the wrapping range
    assert not plan.open_at(at("2026-12-08T12:30"), "UTC")  # Tuesday
    assert parse(("06:00-08:00",)).open_at(at("2026-12-08T07:00"), "UTC")
    assert parse(("daily 00:00-24:00",)).open_at(at("2026-12-08T23:59"), "UTC")


def test_interval_ticks_count_from_local_midnight() -> None:
    plan = parse(("every 15m",))
    assert plan.interval == 900 and not plan.open_at(at("2026-12-08T07:00"), "UTC")
    t1 = plan.tick(at("2026-12-08T07:14:59"), "UTC")
    assert t1 == plan.tick(at("2026-12-08T07:00:00"), "UTC")
    assert plan.tick(at("2026-12-08T07:15:00"), "UTC") == (t1 or 0) + 1
    assert plan.tick(at("2026-12-09T00:00:00"), "UTC") == (plan.tick(at("2026-12-08T23:59:59"), "UTC") or 0) + 1
    assert parse(("continuous",)).continuous and parse(("continuous",)).tick(at("2026-12-08T07:00"), "UTC") is None


@pytest.mark.parametrize(("schedule", "says"), [
    ('"Mon-Fri 22:00"', "is not a schedule; write 'continuous', a window such as 'Mon-Fri 22:00-06:00'"),
    ('"Mon-Fry 22:00-06:00"', "is not a schedule"),
    ('"Mon-Fri 25:00-06:00"', "'25:00' is not a time of day; use HH:MM from 00:00 to 23:59"),
    ('"every 7m"', "must be at least 1 minute and divide a day evenly"),
    ('"every 10 parsecs"', "is not an interval; write 'every N' with a unit s, m, h or d"),
    ('["continuous", "22:00-06:00"]', "'continuous' cannot be combined with other entries"),
    ('["every 15m", "22:00-06:00"]', "cannot be combined with other entries"),
])
def test_bad_schedules_name_the_path_and_the_fix(schedule: str, says: str) -> None:
    with pytest.raises(TopologyError) as err:
        topo(schedule=f", schedule: {schedule}")
    text = str(err.value)
    assert "distribution_schedules[0].schedule" in text and says in text, text


def test_bad_time_zone_and_upload_windows_are_refused() -> None:
    with pytest.raises(TopologyError) as err:
        topo(schedule=', schedule: "22:00-06:00", timezone: Mars/Olympus')
    assert "distribution_schedules[0].timezone" in str(err.value) and "IANA name" in str(err.value)
    with pytest.raises(TopologyError) as err:
        topo(up_schedule=', schedule: "every 15m"')
    assert "distribution_schedules[2].schedule" in str(err.value) and "uploads run continuously" in str(err.value)


def test_schedules_for_a_subjob_and_group() -> None:
    t = topo(schedule=', schedule: "every 30m"')
    prices = t.subjob("Prices")
    assert prices is not None
    assert [s.id for s in schedules_for(t, "g1", prices)] == ["DL", "NIGHT"]  # applied while either delivers
    assert t.distribution_schedules[0].plan.interval == 1800
    assert t.distribution_schedules[0].schedule == ("every 30m",)


def test_offline_false_on_a_job_or_a_subjob() -> None:
    t = topo(job_offline=", offline: false")
    items, prices = t.subjob("Items"), t.subjob("Prices")
    assert items is not None and prices is not None
    assert offline_excluded(t, items)  # its only job says so
    assert not offline_excluded(t, prices)  # also scheduled by 1020
    t = topo(sub_offline=", offline: false")
    assert offline_excluded(t, t.subjob("Items"))  # type: ignore[arg-type]
    with pytest.raises(TopologyError) as err:
        topo(job_offline=", offline: false", sub_offline=", offline: true")
    assert "subjobs[0].offline" in str(err.value) and "remove one of them" in str(err.value)
    with pytest.raises(TopologyError) as err:
        topo(sub_offline=", offline: perhaps")
    assert "subjobs[0].offline" in str(err.value)
