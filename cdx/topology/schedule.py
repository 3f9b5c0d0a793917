"""When a distribution schedule delivers: ``schedule:`` of a distribution schedule (pure; no I/O).

Grammar (one string, or a list of windows):

- ``continuous`` (the default): records are applied as they arrive;
- a **window** ``[DAYS] HH:MM-HH:MM``: applied only while a window is open, in the schedule's
  ``timezone``. DAYS is ``daily`` (the default), a day (``Mon``), a range (``Mon-Fri``, ``Fri-Mon``
  wraps) or a comma list (``Mon,Wed,Fri``). An end at or before the start crosses midnight: the
  window ``Fri 22:00-06:00`` opens Friday 22:00 and closes Saturday 06:00 (the days name the day a
  window opens). Several windows: a YAML list;
- an **interval** ``every N(s|m|h|d)`` (e.g. ``every 15m``): what arrived is applied at each tick,
  the multiples of N counted from local midnight (N >= 1 minute, dividing a day evenly).

:func:`parse` raises ``ValueError`` with what is wrong and how to write it; the model turns that into a
path-located topology error.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONTINUOUS = "continuous"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_RE = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_WINDOW = re.compile(rf"^(?:(?P<days>daily|{_DAY_RE}(?:\s*[-,]\s*{_DAY_RE})*)\s+)?"
                     r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$", re.IGNORECASE)
_EVERY = re.compile(r"^every\s+(?P<n>\d+)\s*(?P<unit>s|sec|m|min|h|d)$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_HOW = ("write 'continuous', a window such as 'Mon-Fri 22:00-06:00' or '06:00-08:00' (daily), a list of"
        " windows, or an interval such as 'every 15m'")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    """Weekdays (0 = Monday) on which the window opens."""
    start: dt.time
    minutes: int
    """Length in minutes (a window ending at or before its start crosses midnight)."""

    def open_at(self, local: dt.datetime) -> bool:
        for back in (0, 1):  # opened today, or yesterday and crossing midnight
            day = local.date() - dt.timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            opened = dt.datetime.combine(day, self.start, tzinfo=local.tzinfo)
            if opened <= local < opened + dt.timedelta(minutes=self.minutes):
                return True
        return False


@dataclass(frozen=True)
class Plan:
    """A parsed schedule: continuous, windows, or an interval (seconds)."""

    windows: tuple[Window, ...] = ()
    interval: int | None = None

    @property
    def continuous(self) -> bool:
        return not self.windows and self.interval is None

    def open_at(self, now: dt.datetime, zone: str) -> bool:
        """Whether records may be applied at ``now`` (aware) by the windows alone: continuous
        schedules are always open, interval schedules never (they release at ticks)."""
        if self.continuous:
            return True
        local = now.astimezone(ZoneInfo(zone))
        return any(w.open_at(local) for w in self.windows)

    def tick(self, now: dt.datetime, zone: str) -> int | None:
        """The number of the interval's latest tick at ``now`` (``None`` unless an interval)."""
        if self.interval is None:
            return None
        local = now.astimezone(ZoneInfo(zone))
        midnight = dt.datetime.combine(local.date(), dt.time(), tzinfo=local.tzinfo)
        seconds = int((local - midnight).total_seconds())
        return local.date().toordinal() * (86400 // self.interval) + seconds // self.interval


def _days(text: str | None) -> frozenset[int]:
    if text is None or text.casefold() == "daily":
        return frozenset(range(7))
    out: set[int] = set()
    for part in re.split(r"\s*,\s*", text.casefold()):
        ends = [_day(d) for d in re.split(r"\s*-\s*", part)]
        if len(ends) == 1:
            out.add(ends[0])
            continue
        if len(ends) != 2:
            raise ValueError(f"day range {part!r} has more than two ends; {_HOW}")
        first, last = ends
        out.update((first + i) % 7 for i in range((last - first) % 7 + 1))
    return frozenset(out)


def _day(text: str) -> int:
    for i, name in enumerate(DAYS):
        if text.startswith(name) and _DAY_NAMES[i].startswith(text):
            return i
    raise ValueError(f"{text!r} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun")


def _time(text: str) -> dt.time:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours == 24 and minutes == 0:
        return dt.time(0, 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day; use HH:MM from 00:00 to 23:59")
    return dt.time(hours, minutes)


def _window(text: str) -> Window:
    m = _WINDOW.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a schedule; {_HOW}")
    start, end = _time(m["start"]), _time(m["end"])
    minutes = (end.hour * 60 + end.minute - start.hour * 60 - start.minute) % 1440 or 1440
    return Window(_days(m["days"]), start, minutes)


def _interval(m: re.Match[str]) -> int:
    seconds = int(m["n"]) * _UNITS[m["unit"].casefold()]
    if seconds < 60 or 86400 % seconds:
        raise ValueError(f"interval {m.group(0)!r} must be at least 1 minute and divide a day evenly"
                         " (e.g. 'every 5m', 'every 15m', 'every 2h', 'every 1d')")
    return seconds


@lru_cache(maxsize=256)
def parse(entries: tuple[str, ...]) -> Plan:
    """The plan of a schedule's entries (see module docstring); ``ValueError`` saying how to fix."""
    texts = [e.strip() for e in entries]
    if not texts or texts == [CONTINUOUS]:
        return Plan()
    if CONTINUOUS in (t.casefold() for t in texts):
        raise ValueError(f"'continuous' cannot be combined with other entries; {_HOW}")
    every = [m for t in texts if (m := _EVERY.match(t))]
    if every:
        if len(texts) > 1:
            raise ValueError(f"an interval ('{every[0].group(0)}') cannot be combined with other entries; {_HOW}")
        return Plan(interval=_interval(every[0]))
    if any(t.casefold().startswith("every") for t in texts):
        raise ValueError(f"{texts[0]!r} is not an interval; write 'every N' with a unit s, m, h or d,"
                         " e.g. 'every 15m'")
    return Plan(windows=tuple(_window(t) for t in texts))


def normalise(value: object) -> tuple[str, ...]:
    """The model's stored form (a tuple of entries), checked; ``ValueError`` saying how to fix."""
    if value is None:
        return (CONTINUOUS,)
    if isinstance(value, str):
        entries: tuple[str, ...] = (value,)
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        entries = tuple(value)
    else:
        raise ValueError(f"{value!r} is not a schedule; {_HOW}")
    entries = tuple(" ".join(e.split()) for e in entries)
    parse(entries)
    return entries


def check_zone(value: str) -> str:
    """An IANA time zone name, checked."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{value!r} is not a time zone; use an IANA name such as 'UTC', 'Europe/Berlin' or"
                         " 'America/New_York'") from e
    return value
