"""Table and property tests of the fleet-share rule (``Policy.fleet_share``).

Among equal priorities the tenant holding the fewest normalised units of the fleet
(divided by its weight) goes first, cohort or not; work started at ``now`` does not
count. Fleet: 8-card ``ascend-910b`` nodes in cluster ``c1`` unless a row says otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from builders import brief, make_queue, make_running, make_snapshot
from builders import make_job as J
from builders import make_node as N
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.ids import TenantId
from suanwang.scheduler import Admit, cycle
from suanwang.scheduler.policy import KUEUE, SUANWANG, Policy
from suanwang.scheduler.queues import fleet_shares, share_key

ADMIT = "c1:ascend-910b"


@pytest.mark.parametrize(
    ("running", "weights", "units", "expected"),
    [
        pytest.param({"a": 8, "b": 16}, {}, {}, {"a": 0.25, "b": 0.5}, id="cards-over-fleet"),
        pytest.param({"a": 8}, {"a": 2.0}, {}, {"a": 0.125}, id="weight-divides"),
        pytest.param({"a": 8}, {"a": 0.0}, {}, {"a": math.inf}, id="zero-weight-last"),
        pytest.param(
            {"a": 8, "b": 8},
            {},
            {"ascend-910b": 2.0, "metax-c500": 1.0},
            {"a": 16 / 48, "b": 8 / 48},
            id="units-weigh-chips",
        ),
    ],
)
def test_fleet_shares(
    running: dict[str, int],
    weights: dict[str, float],
    units: dict[str, float],
    expected: dict[str, float],
) -> None:
    """Nodes 1-2 are ascend, 3-4 metax; ``a`` runs on ascend, ``b`` on metax."""
    nodes = [N(1), N(2), N(3, chip="metax-c500"), N(4, chip="metax-c500")]
    jobs, node = [], {"a": 1, "b": 3}
    for tenant, cards in running.items():
        chip = "ascend-910b" if tenant == "a" else "metax-c500"
        first = node[tenant]
        on = {first + i: min(8, cards - 8 * i) for i in range(math.ceil(cards / 8))}
        jobs.append(make_running(f"r{tenant}", on, tenant=tenant, chip=chip, started_at=10.0))
    tenant_queues = [make_queue(t, {"ascend": 8}, weight=w) for t, w in weights.items()]
    snapshot = make_snapshot(
        nodes, [], running=jobs, queues=tenant_queues, chip_units=units, now=100.0
    )
    assert fleet_shares(snapshot) == pytest.approx(expected)


def test_work_started_now_does_not_count() -> None:
    running = [make_running("r", {1: 8}, tenant="a", started_at=100.0)]
    assert fleet_shares(make_snapshot([N(1), N(2)], [], running=running, now=100.0)) == {}


@pytest.mark.parametrize(
    ("policy", "held", "weights", "admitted"),
    [
        pytest.param(SUANWANG, {"a": 16, "b": 8}, {}, "pb", id="lighter-tenant-first"),
        pytest.param(SUANWANG, {"a": 8, "b": 16}, {}, "pa", id="submit-order-when-lighter"),
        pytest.param(SUANWANG, {"a": 16, "b": 0}, {}, "pb", id="idle-tenant-first"),
        pytest.param(SUANWANG, {"a": 16, "b": 8}, {"a": 4.0}, "pa", id="weight-divides-share"),
        pytest.param(KUEUE, {"a": 16, "b": 8}, {}, "pa", id="kueue-ignores-fleet-share"),
        pytest.param(
            dataclasses.replace(SUANWANG, fleet_share=False, share_floor=False),
            {"a": 16, "b": 8},
            {},
            "pa",
            id="switch-off",
        ),
    ],
)
def test_fleet_share_orders_tenants_without_cohorts(
    policy: Policy, held: dict[str, int], weights: dict[str, float], admitted: str
) -> None:
    """No cohorts (standalone queues with ample quota, or none); room for one 8-card job."""
    running, node = [], 1
    for tenant, cards in held.items():
        while cards > 0:
            running.append(make_running(f"r{node}", {node: 8}, tenant=tenant))
            cards, node = cards - 8, node + 1
    tenant_queues = [
        make_queue(t, {"ascend": 64}, cohort=None, weight=w) for t, w in weights.items()
    ]
    jobs = [
        J("pa", tenant="a", seq=0, cards_per_node=8),
        J("pb", tenant="b", seq=1, cards_per_node=8),
    ]
    nodes = [N(i) for i in range(1, node + 1)]
    snapshot = make_snapshot(nodes, jobs, queues=tenant_queues, running=running, now=1_000.0)
    assert [d.job for d in cycle(snapshot, policy) if isinstance(d, Admit)] == [admitted]


def test_priority_beats_fleet_share() -> None:
    running = [make_running("r1", {1: 8}, tenant="a"), make_running("r2", {2: 8}, tenant="a")]
    jobs = [
        J("pa", tenant="a", priority=5, cards_per_node=8),
        J("pb", tenant="b", priority=0, seq=1, cards_per_node=8),
    ]
    snapshot = make_snapshot([N(1), N(2), N(3)], jobs, running=running, now=1_000.0)
    assert [brief(d) for d in cycle(snapshot)] == [("pa", ADMIT), ("pb", "capacity")]
    # With the fair-share floor, pb (b holds nothing, its fair share is 12 cards) then
    # stops one of a's priority-0 jobs (a holds 16 + 8), after pa went first all the same.
    floor = [brief(d) for d in cycle(snapshot, dataclasses.replace(SUANWANG, share_floor=True))]
    assert floor[0] == ("pa", ADMIT)
    assert floor[1][1] == "preempt:pb"
    assert floor[2] == ("pb", "preempting")


def test_cohort_share_comes_before_fleet_share() -> None:
    """Both borrow from idle ``c``: ``a`` 8 of 16 held, ``b`` 4 of 32. ``b`` holds more of
    the fleet but borrows less, so it goes first; room for one 8-card job."""
    tenant_queues = [
        make_queue("a", {"ascend": (8, None, None)}),
        make_queue("b", {"ascend": (28, None, None)}),
        make_queue("c", {"ascend": 40}),
    ]
    running = [make_running(f"a{i}", {i: 8}, tenant="a") for i in (1, 2)]
    running += [make_running(f"b{i}", {i: 8}, tenant="b") for i in (3, 4, 5, 6)]
    jobs = [
        J("pa", tenant="a", seq=0, cards_per_node=8),
        J("pb", tenant="b", seq=1, cards_per_node=8),
    ]
    nodes = [N(i) for i in range(1, 8)]
    snapshot = make_snapshot(nodes, jobs, queues=tenant_queues, running=running, now=1_000.0)
    assert [d.job for d in cycle(snapshot) if isinstance(d, Admit)] == ["pb"]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(1.0, {"a": 0.0, "b": 1.0, "c": 2.0, "d": 0.0}, id="whole-fair-parts"),
        pytest.param(2.0, {"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0}, id="two-fair-parts"),
        pytest.param(0.0, {"a": 0.5, "b": 1.0, "c": 2.25, "d": 0.0}, id="exact"),
    ],
)
def test_share_key_levels(step: float, expected: dict[str, float]) -> None:
    """16 nodes, 4 tenants with work (fair part 4 nodes each): a holds 2, b 4, c 9, d 0."""
    held = {"a": 2, "b": 4, "c": 9}
    running, node = [], 1
    for tenant, count in held.items():
        for _ in range(count):
            running.append(make_running(f"r{node}", {node: 8}, tenant=tenant))
            node += 1
    jobs = [J("pd", tenant="d"), J("pa", tenant="a")]
    nodes = [N(i) for i in range(1, 17)]
    snapshot = make_snapshot(nodes, jobs, running=running, now=1.0)
    policy = dataclasses.replace(
        SUANWANG, tuning=dataclasses.replace(SUANWANG.tuning, fleet_share_step=step)
    )
    key = share_key(policy, snapshot, None)
    assert key is not None
    assert {t: key(TenantId(t))[1] for t in "abcd"} == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    held=st.dictionaries(
        st.sampled_from("abcde"), st.integers(min_value=0, max_value=6), min_size=2
    ),
    weights=st.dictionaries(st.sampled_from("abcde"), st.sampled_from([0.5, 1.0, 2.0])),
    step=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_share_key_orders_by_weighted_holding(
    held: dict[str, int], weights: dict[str, float], step: float
) -> None:
    """Property: a tenant holding fewer cards per unit of weight never sorts after one
    holding more, and strictly before it when shares are compared exactly."""
    running, node = [], 1
    for tenant, count in sorted(held.items()):
        for _ in range(count):
            running.append(make_running(f"r{node}", {node: 8}, tenant=tenant))
            node += 1
    tenant_queues = [
        make_queue(t, {"ascend": 64}, cohort=None, weight=w) for t, w in weights.items()
    ]
    snapshot = make_snapshot(
        [N(i) for i in range(1, node + 1)], [], running=running, queues=tenant_queues, now=1.0
    )
    policy = dataclasses.replace(
        SUANWANG, tuning=dataclasses.replace(SUANWANG.tuning, fleet_share_step=step)
    )
    key = share_key(policy, snapshot, None)
    assert key is not None
    for x in held:
        for y in held:
            wx, wy = weights.get(x, 1.0), weights.get(y, 1.0)
            if held[x] / wx < held[y] / wy - 1e-9:
                assert key(TenantId(x)) <= key(TenantId(y))
                if step == 0:
                    assert key(TenantId(x)) < key(TenantId(y))
