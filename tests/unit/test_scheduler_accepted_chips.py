"""Jobs that accept several chip types: eligibility and how quota is charged.

Rule (as Kueue's flavour fungibility): a job listing several accepted chips may be admitted
on any of them; its cards are charged to the quota of the family of the chip it is
admitted on, and only there, for as long as it holds them.

Fleet: cluster ``c1`` with 8-card ``ascend-910b`` nodes (family ``ascend``) and cluster
``c2`` with 8-card ``metax-c500`` nodes (family ``metax``).
"""

from __future__ import annotations

import pytest
from builders import brief, make_queue, make_running, make_snapshot
from builders import make_job as J
from builders import make_node as N

from suanwang.scheduler import Admit, NodeView, cycle
from suanwang.scheduler.policy import POLICIES, Policy
from suanwang.scheduler.snapshot import RunningJob, TenantQueue

BOTH = ("ascend-910b", "metax-c500")
EVERY_POLICY = pytest.mark.parametrize("policy", list(POLICIES.values()), ids=list(POLICIES))


def fleet() -> list[NodeView]:
    return [N(1, cluster="c1"), N(2, cluster="c2", chip="metax-c500")]


def queue(ascend: int, metax: int) -> TenantQueue:
    return make_queue("a", {"ascend": ascend, "metax": metax}, cohort=None)


def metax_job(cards: int) -> RunningJob:
    return make_running("r", {2: cards}, tenant="a", cluster="c2", chip="metax-c500")


def decide(
    policy: Policy, cards: int, tenant_queue: TenantQueue, running: tuple[RunningJob, ...] = ()
) -> list[tuple[str, str]]:
    job = J("j", tenant="a", chips=BOTH, cards_per_node=cards, duration_s=600.0)
    snapshot = make_snapshot(fleet(), [job], queues=[tenant_queue], running=running)
    return [brief(d) for d in cycle(snapshot, policy)]


@EVERY_POLICY
def test_admitted_on_the_accepted_family_that_has_quota(policy: Policy) -> None:
    assert decide(policy, 4, queue(ascend=0, metax=8)) == [("j", "c2:metax-c500")]
    assert decide(policy, 4, queue(ascend=8, metax=0)) == [("j", "c1:ascend-910b")]


@EVERY_POLICY
def test_running_work_is_charged_to_the_family_it_was_admitted_on(policy: Policy) -> None:
    """4 metax cards already held by the same multi-chip tenant count against metax only:
    with metax full, the next job goes to ascend; with no ascend quota it waits."""
    running = (metax_job(4),)
    assert decide(policy, 4, queue(ascend=8, metax=4), running) == [("j", "c1:ascend-910b")]
    assert decide(policy, 4, queue(ascend=0, metax=8), running) == [("j", "c2:metax-c500")]
    assert decide(policy, 4, queue(ascend=0, metax=4), running) == [("j", "quota")]


@EVERY_POLICY
def test_admission_names_the_chip_and_family_it_is_charged_to(policy: Policy) -> None:
    job = J("j", tenant="a", chips=("metax", "hygon-k100"), cards_per_node=2)
    snapshot = make_snapshot(fleet(), [job], queues=[queue(ascend=8, metax=8)])
    (admit,) = cycle(snapshot, policy)
    assert isinstance(admit, Admit)
    assert (admit.chip, admit.family) == ("metax-c500", "metax")


def test_a_job_listing_none_of_the_fleets_chips_is_never_admitted() -> None:
    job = J("j", chips=("hygon-k100", "nvidia-h20"), cards_per_node=1)
    assert [brief(d) for d in cycle(make_snapshot(fleet(), [job]))] == [("j", "no_match")]
