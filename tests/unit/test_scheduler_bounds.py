"""The per-cycle bounds that keep a cycle fast on huge queues: at most
``max_admissions_per_cycle`` admissions, later jobs wait for the next cycle undecided."""

from __future__ import annotations

import dataclasses

from builders import make_job, make_node, make_snapshot

from suanwang.scheduler import Admit, cycle
from suanwang.scheduler.policy import POLICIES, Tuning


def test_a_cycle_stops_at_its_admission_cap_and_the_next_one_goes_on() -> None:
    nodes = [make_node(i, cards_total=8, cards_free=8) for i in range(1, 5)]
    jobs = [make_job(f"j{i}", seq=i, cards_per_node=8) for i in range(6)]
    policy = dataclasses.replace(POLICIES["kueue"], tuning=Tuning(max_admissions_per_cycle=3))
    first = cycle(make_snapshot(nodes, jobs), policy)
    assert [d.job for d in first] == ["j0", "j1", "j2"]
    assert all(isinstance(d, Admit) for d in first)
    taken = {p.node for d in first if isinstance(d, Admit) for p in d.placements}
    left = [n for n in nodes if n.id not in taken]
    second = cycle(make_snapshot(left, jobs[3:]), policy)
    assert [(d.job, type(d).__name__) for d in second] == [
        ("j3", "Admit"),
        ("j4", "Pending"),
        ("j5", "Pending"),
    ]
