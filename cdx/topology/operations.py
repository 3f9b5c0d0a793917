"""Topology queries and checks for the operations controls: offline exclusion and delivery schedules.

- ``offline: false`` on a job leaves its subjobs out of offline register databases; on a subjob,
  that subjob. A subjob with ``offline: true`` whose every job says ``offline: false`` is a
  contradiction (reported by :func:`check_operations`).
- A download subjob's records reach a channel data group through the distribution schedules that
  run one of its jobs for that group; they may be applied while **any** of those schedules
  delivers (:func:`schedules_for`). Upload schedules run continuously (a window there is reported).
"""

from __future__ import annotations

from cdx.topology.issues import Issue
from cdx.topology.model import Direction, DistributionSchedule, Job, Subjob
from cdx.topology.root import Topology
from cdx.topology.yamlsrc import format_path


def offline_excluded(topo: Topology, subjob: Subjob) -> bool:
    """Whether ``subjob`` is left out of offline register databases."""
    if subjob.offline is not None:
        return not subjob.offline
    jobs = topo.jobs_of(subjob)
    return bool(jobs) and all(not j.offline for j in jobs)


def schedules_for(topo: Topology, group_id: str, subjob: Subjob) -> list[DistributionSchedule]:
    """The schedules that deliver ``subjob`` to group ``group_id`` (same direction), in file order."""
    jobs = {j.casefold() for j in subjob.scheduled_by}
    return [s for s in topo.distribution_schedules
            if s.direction is subjob.direction and jobs & {j.casefold() for j in s.jobs}
            and group_id.casefold() in {g.casefold() for g in s.channel_data_groups}]


def check_operations(jobs_at: list[tuple[int, Job]], subjobs: list[tuple[int, Subjob]],
                     schedules: list[tuple[int, DistributionSchedule]]) -> list[Issue]:
    """Contradictory ``offline`` settings and windows on upload schedules (items with their file index)."""
    out: list[Issue] = []
    jobs: dict[str, Job] = {j.id.casefold(): j for _, j in jobs_at}
    for i, s in subjobs:
        mine = [jobs[j.casefold()] for j in s.scheduled_by if j.casefold() in jobs]
        if s.offline is True and mine and all(not j.offline for j in mine):
            out.append(Issue(format_path(("subjobs", i, "offline")), None,
                             f"subjob {s.id!r} says offline: true but every job scheduling it"
                             f" ({', '.join(j.id for j in mine)}) says offline: false; remove one of them"))
    for i, sched in schedules:
        if sched.direction is Direction.UPLOAD and not sched.plan.continuous:
            out.append(Issue(format_path(("distribution_schedules", i, "schedule")), None,
                             f"upload schedule {sched.id!r} has schedule {', '.join(sched.schedule)!r}, but uploads"
                             " run continuously (windows and intervals apply to download schedules);"
                             " remove schedule: or set it to continuous"))
    return out
