"""Hostile tenant: a private deployment's replicas respect other tenants' nominal quota.

A serving replica may stop its own tenant's preemptible lower-priority work, and another
tenant's only where that tenant's nominal quota does not protect it: the tenant borrows
(holds more than its nominal quota of the family), or has no quota for the family (no
cohort queue quota, no cap outside a cohort, for it or for units). So
tenant ``a`` cannot deploy replicas to evict tenant ``b``'s training that runs within
``b``'s own quota, and may still take back cards ``b`` borrows (训推一体). The operator's
public replicas (``maas-public``) follow the same rule. Fleet: 8-card ``ascend-910b``
nodes in ``c1`` (family ``ascend``); ``now`` is 1,000 s.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import brief, make_queue, make_snapshot
from builders import make_job as J
from builders import make_node as N
from builders import make_running as R
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.scheduler import PendingJob, cycle
from suanwang.scheduler.decisions import Preempt
from suanwang.scheduler.policy import SUANWANG
from suanwang.scheduler.quota import UNITS
from suanwang.scheduler.snapshot import RunningJob, TenantQueue

NOW = 1_000.0
REPLICA = 500
TWO = [N(1), N(2)]


def replica(tenant: str = "a", nodes: int = 1) -> PendingJob:
    job = J("rep", tenant=tenant, priority=REPLICA, cards_per_node=8, nodes=nodes)
    return dataclasses.replace(job, serving=True)


def b_jobs(count: int, priority: int = 100) -> list[RunningJob]:
    """``b``'s training: one 8-card preemptible job per node from node 1 (the last one
    checkpointed latest: it loses the least work)."""
    return [
        R(f"b{n}", {n: 8}, tenant="b", priority=priority, last_checkpoint_at=900.0 + n)
        for n in range(1, count + 1)
    ]


def preempted(
    running: list[RunningJob],
    job: PendingJob,
    queues: list[TenantQueue],
    caps: dict[str, dict[str, int]] | None = None,
) -> list[str]:
    snapshot = make_snapshot(TWO, [job], running=running, queues=queues, quotas=caps, now=NOW)
    return [j for j, what in map(brief, cycle(snapshot, SUANWANG)) if what.startswith("preempt:")]


LENDER = make_queue("lender", {"ascend": 16})
"""Lends ``b`` what it borrows (same cohort ``co``)."""


@pytest.mark.parametrize(
    ("job", "queues", "expected"),
    [
        pytest.param(replica(), [make_queue("b", {"ascend": 16})], [], id="b-within-nominal"),
        pytest.param(
            replica(),
            [make_queue("b", {"ascend": 16}, cohort=None)],
            [],
            id="b-standalone-queue",
        ),
        pytest.param(replica(), [make_queue("b", {UNITS: 16})], [], id="b-within-nominal-units"),
        pytest.param(
            replica("maas-public"),
            [make_queue("b", {"ascend": 16})],
            [],
            id="public-replica-too",
        ),
        pytest.param(
            replica(),
            [make_queue("b", {"ascend": (8, 8, None)}), LENDER],
            ["b2"],
            id="b-borrows-8-given-back",
        ),
        pytest.param(
            replica(nodes=2),
            [make_queue("b", {"ascend": (8, 8, None)}), LENDER],
            [],
            id="b-borrows-8-not-16",
        ),
        pytest.param(
            replica(nodes=2),
            [make_queue("b", {"ascend": (0, 16, None)}), LENDER],
            ["b2", "b1"],
            id="b-borrows-all",
        ),
        pytest.param(replica(), [], ["b2"], id="b-has-no-quota"),
        pytest.param(
            replica(), [make_queue("b", {"nvidia": 16})], ["b2"], id="b-no-quota-for-family"
        ),
        pytest.param(replica("b"), [make_queue("b", {"ascend": 16})], ["b2"], id="b-own-replica"),
    ],
)
def test_whose_training_a_replica_may_stop(
    job: PendingJob, queues: list[TenantQueue], expected: list[str]
) -> None:
    assert preempted(b_jobs(2), job, queues) == expected


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        ({"b": {"ascend": 16}}, []),
        ({"b": {"units": 16}}, []),
        ({"b": {"nvidia": 16}}, ["b2"]),
        ({"a": {"ascend": 16}}, ["b2"]),
    ],
    ids=["b-capped", "b-capped-units", "b-capped-other-family", "b-uncapped"],
)
def test_a_cap_outside_a_cohort_protects_too(
    caps: dict[str, dict[str, int]], expected: list[str]
) -> None:
    """A tenant outside a cohort never borrows: all its work within a cap of the family
    is its own."""
    assert preempted(b_jobs(2), replica(), [], caps) == expected


@pytest.mark.parametrize(
    ("tenant", "queues", "says"),
    [
        (
            "a",
            [make_queue("b", {"ascend": (8, 8, None)}), LENDER],
            "; tenant b borrows ascend quota",
        ),
        ("a", [], "; tenant b has no ascend quota"),
        ("b", [make_queue("b", {"ascend": 16})], "this job has priority 100"),
    ],
    ids=["borrowed", "no-quota", "own-tenant"],
)
def test_the_reason_says_why_the_quota_did_not_protect(
    tenant: str, queues: list[TenantQueue], says: str
) -> None:
    snapshot = make_snapshot(TWO, [replica(tenant)], running=b_jobs(2), queues=queues, now=NOW)
    reasons = [d.reason for d in cycle(snapshot, SUANWANG) if isinstance(d, Preempt)]
    assert len(reasons) == 1, reasons
    assert reasons[0].startswith("serving: production replica job rep")
    assert reasons[0].endswith(says), reasons


def test_the_replicas_tenant_quota_still_applies() -> None:
    """``a`` stops ``b``'s borrowed work only for a replica ``a``'s own quota admits."""
    queues = [make_queue("a", {"ascend": 0}), make_queue("b", {"ascend": (0, 16, None)}), LENDER]
    assert preempted(b_jobs(2), replica(), queues) == []
    queues[0] = make_queue("a", {"ascend": 8})
    assert preempted(b_jobs(2), replica(), queues) == ["b2"]


@settings(max_examples=150, deadline=None)
@given(
    nominal=st.sampled_from([0, 8, 16, 24, 32]),
    b_count=st.integers(1, 4),
    rep_nodes=st.integers(1, 4),
    standalone=st.booleans(),
    public=st.booleans(),
    priorities=st.lists(st.integers(0, REPLICA - 1), min_size=4, max_size=4),
)
def test_a_replica_never_takes_what_nominal_quota_protects(
    nominal: int,
    b_count: int,
    rep_nodes: int,
    standalone: bool,
    public: bool,
    priorities: list[int],
) -> None:
    """Whatever ``b`` runs and whoever deploys: ``b`` keeps min(held, nominal) cards; and
    it gives back what it borrows when a replica needs that much and nothing else frees."""
    nodes = [N(n) for n in range(1, 5)]
    running = [
        R(f"b{n}", {n: 8}, tenant="b", priority=priorities[n - 1], last_checkpoint_at=900.0)
        for n in range(1, b_count + 1)
    ]
    running += [R(f"c{n}", {n: 8}, tenant="c", preemptible=False) for n in range(b_count + 1, 5)]
    queues = [
        make_queue("b", {"ascend": (nominal, None, None)}, cohort=None if standalone else "co"),
        make_queue("lender", {"ascend": 32}),
    ]
    job = replica("maas-public" if public else "a", nodes=rep_nodes)
    snapshot = make_snapshot(nodes, [job], running=running, queues=queues, now=NOW)
    briefs = [brief(d) for d in cycle(snapshot, SUANWANG)]
    stopped = [j for j, what in briefs if what == "preempt:rep"]
    assert all(j.startswith("b") for j in stopped), briefs
    held = 8 * b_count
    borrowed = 0 if standalone else max(0, held - nominal)
    assert 8 * len(stopped) <= borrowed, briefs
    if 8 * rep_nodes <= borrowed:
        assert len(stopped) == rep_nodes, briefs
