"""Table-driven tests of the scheduling cycle, one table per rule.

Each row gives nodes, pending jobs (and quotas/usage where relevant) and the expected
decisions, in order, as ``(job, cluster or pending reason, sorted node ids)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from builders import FamilyTable, Summary, make_snapshot, summarize
from builders import make_job as J
from builders import make_node as N

from suanwang.domain.ids import ChipFamily, ChipName, ClusterName, JobId, NodeId
from suanwang.scheduler import Admit, NodeView, Pending, PendingJob, Placement, cycle
from suanwang.scheduler.cycle import NO_ELIGIBLE_CLUSTER
from suanwang.scheduler.queues import order_pending

Nodes = list[NodeView]
Jobs = list[PendingJob]
Expected = list[Summary]

WAIT_8 = "waiting for 8 free ascend-910b cards on 1 node"


def run(
    nodes: Iterable[NodeView],
    jobs: Iterable[PendingJob],
    quotas: FamilyTable | None = None,
    usage: FamilyTable | None = None,
) -> list[Summary]:
    """Summaries of the decisions of one cycle over the given inputs."""
    decisions = cycle(make_snapshot(nodes, jobs, quotas=quotas, usage=usage))
    return [summarize(d) for d in decisions]


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1)],
            [
                J("a", priority=0, seq=0, cards_per_node=8),
                J("b", priority=5, seq=1, cards_per_node=8),
            ],
            [("b", "c1", (1,)), ("a", WAIT_8, ())],
            id="higher-priority-first",
        ),
        pytest.param(
            [N(1)],
            [J("a", seq=2, cards_per_node=8), J("b", seq=1, cards_per_node=8)],
            [("b", "c1", (1,)), ("a", WAIT_8, ())],
            id="fifo-within-priority",
        ),
        pytest.param(
            [N(1)],
            [J("b", seq=1, cards_per_node=8), J("a", seq=1, cards_per_node=8)],
            [("a", "c1", (1,)), ("b", WAIT_8, ())],
            id="id-breaks-seq-ties",
        ),
        pytest.param(
            [N(1)],
            [
                J("b", priority=0, seq=0, cards_per_node=8),
                J("a", priority=1, seq=9, cards_per_node=8),
            ],
            [("a", "c1", (1,)), ("b", WAIT_8, ())],
            id="priority-beats-seq",
        ),
        pytest.param(
            [N(1)],
            [J("big", priority=9, cards_per_node=16), J("small", priority=0, cards_per_node=8)],
            [
                ("big", "too large: no eligible cluster has 1 ascend-910b node with 16 cards", ()),
                ("small", "c1", (1,)),
            ],
            id="blocked-head-does-not-block-queue",
        ),
    ],
)
def test_queue_order(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "quotas", "usage", "expected"),
    [
        pytest.param(
            [N(1), N(2)],
            [J("a", cards_per_node=8, nodes=2)],
            {"t1": {"ascend": 8}},
            None,
            [("a", "quota: tenant t1 would hold 16 of 8 ascend cards", ())],
            id="cap-blocks",
        ),
        pytest.param(
            [N(1)],
            [J("a", cards_per_node=8)],
            {"t1": {"ascend": 8}},
            {"t1": {"ascend": 4}},
            [("a", "quota: tenant t1 would hold 12 of 8 ascend cards", ())],
            id="usage-counts",
        ),
        pytest.param(
            [N(1)],
            [J("a", cards_per_node=8)],
            {"t1": {"ascend": 12}},
            {"t1": {"ascend": 4}},
            [("a", "c1", (1,))],
            id="exactly-at-cap-is-allowed",
        ),
        pytest.param(
            [N(1)],
            [J("a", cards_per_node=8)],
            {"t1": {"metax": 0}},
            None,
            [("a", "c1", (1,))],
            id="absent-family-unlimited",
        ),
        pytest.param(
            [N(1)],
            [J("a", cards_per_node=8)],
            {"t2": {"ascend": 0}},
            None,
            [("a", "c1", (1,))],
            id="absent-tenant-unlimited",
        ),
        pytest.param(
            [N(1)],
            [J("a", priority=1, cards_per_node=8), J("b", tenant="t2", cards_per_node=8)],
            {"t1": {"ascend": 0}},
            None,
            [("a", "quota: tenant t1 would hold 8 of 0 ascend cards", ()), ("b", "c1", (1,))],
            id="quota-does-not-block-others",
        ),
        pytest.param(
            [N(1), N(2)],
            [J("a", seq=0, cards_per_node=8), J("b", seq=1, cards_per_node=8)],
            {"t1": {"ascend": 12}},
            None,
            [("a", "c1", (1,)), ("b", "quota: tenant t1 would hold 16 of 12 ascend cards", ())],
            id="counts-this-cycle-admissions",
        ),
        pytest.param(
            [N(1), N(2, chip="metax-c500")],
            [J("a", chip="any", cards_per_node=8)],
            {"t1": {"ascend": 0}},
            None,
            [("a", "c1", (2,))],
            id="any-selector-uses-allowed-family",
        ),
        pytest.param(
            [N(1), N(2, chip="metax-c500")],
            [J("a", chip="any", cards_per_node=8)],
            {"t1": {"ascend": 0, "metax": 4}},
            None,
            [("a", "quota: tenant t1 would hold 8 of 0 ascend cards; 8 of 4 metax cards", ())],
            id="any-selector-all-families-blocked",
        ),
        pytest.param(
            [N(1, cluster="sim", simulated=True)],
            [J("a", simulated=True, cards_per_node=0)],
            {"t1": {"ascend": 0}},
            {"t1": {"ascend": 8}},
            [("a", "sim", (1,))],
            id="zero-cards-never-over-quota",
        ),
    ],
)
def test_quota(
    nodes: list[NodeView],
    jobs: list[PendingJob],
    quotas: FamilyTable | None,
    usage: FamilyTable | None,
    expected: list[Summary],
) -> None:
    assert run(nodes, jobs, quotas, usage) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1), N(2)],
            [J("a", cards_per_node=8, nodes=2)],
            [("a", "c1", (1, 2))],
            id="gang-admitted-whole",
        ),
        pytest.param(
            [N(1, cards_free=4), N(2, cards_free=4), N(3, cards_free=0)],
            [J("a", priority=1, cards_per_node=4, nodes=3), J("b", cards_per_node=4)],
            [
                ("a", "waiting for 12 free ascend-910b cards on 3 nodes (4 per node)", ()),
                ("b", "c1", (1,)),
            ],
            id="all-or-nothing",
        ),
        pytest.param(
            [N(1, cards_total=16)],
            [J("a", cards_per_node=8, nodes=2)],
            [("a", "too large: no eligible cluster has 2 ascend-910b nodes with 8 cards", ())],
            id="distinct-nodes",
        ),
        pytest.param(
            [N(1, cluster="c1"), N(2, cluster="c2")],
            [J("a", cards_per_node=8, nodes=2)],
            [("a", "too large: no eligible cluster has 2 ascend-910b nodes with 8 cards", ())],
            id="one-cluster",
        ),
        pytest.param(
            [N(1), N(2, chip="ascend-310p")],
            [J("a", chip="ascend", cards_per_node=8, nodes=2)],
            [("a", "too large: no eligible cluster has 2 ascend nodes with 8 cards", ())],
            id="one-chip",
        ),
        pytest.param(
            [N(1, cluster="c2"), N(2), N(3, chip="ascend-310p"), N(4)],
            [J("a", chip="ascend", cards_per_node=8, nodes=2)],
            [("a", "c1", (2, 4))],
            id="one-cluster-one-chip-found",
        ),
    ],
)
def test_gang(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1, chip="ascend-310p"), N(2)],
            [J("a", chip="ascend-910b")],
            [("a", "c1", (2,))],
            id="name",
        ),
        pytest.param(
            [N(1, chip="metax-c500"), N(2, chip="ascend-310p")],
            [J("a", chip="ascend")],
            [("a", "c1", (2,))],
            id="family",
        ),
        pytest.param(
            [N(1, chip="metax-c500")], [J("a", chip="any")], [("a", "c1", (1,))], id="any"
        ),
        pytest.param(
            [N(1)], [J("a", chip="metax")], [("a", NO_ELIGIBLE_CLUSTER, ())], id="family-miss"
        ),
        pytest.param(
            [N(1)], [J("a", chip="ascend-310p")], [("a", NO_ELIGIBLE_CLUSTER, ())], id="name-miss"
        ),
        pytest.param(
            [N(1, chip="hygon-k100")],
            [J("a", chip="any", cards_per_node=8, nodes=2)],
            [("a", "too large: no eligible cluster has 2 nodes with 8 cards", ())],
            id="any-reason-has-no-chip",
        ),
    ],
)
def test_selector(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


def S(node_id: int, cards_free: int | None = None) -> NodeView:
    """A node of the simulated cluster ``sim``."""
    return N(node_id, cluster="sim", simulated=True, cards_free=cards_free)


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1)], [J("a", simulated=True)], [("a", NO_ELIGIBLE_CLUSTER, ())], id="sim-on-real"
        ),
        pytest.param([S(1)], [J("a")], [("a", NO_ELIGIBLE_CLUSTER, ())], id="real-on-sim"),
        pytest.param(
            [N(1), S(2)],
            [J("a", simulated=True, cards_per_node=8), J("b", cards_per_node=8)],
            [("a", "sim", (2,)), ("b", "c1", (1,))],
            id="each-to-its-kind",
        ),
        pytest.param(
            [S(1, cards_free=0), S(2, cards_free=0)],
            [J("a", simulated=True, cards_per_node=0, nodes=2)],
            [("a", "sim", (1, 2))],
            id="sim-zero-cards-on-full-nodes",
        ),
        pytest.param(
            [N(1)],
            [J("a", cards_per_node=0)],
            [("a", "invalid request: a real job needs at least 1 card per node", ())],
            id="real-zero-cards-invalid",
        ),
        pytest.param(
            [N(1)],
            [J("a", nodes=0), J("b", cards_per_node=-1)],
            [
                ("a", "invalid request: 0 nodes (need at least 1)", ()),
                ("b", "invalid request: -1 cards per node", ()),
            ],
            id="malformed-requests",
        ),
    ],
)
def test_simulated_and_invalid(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1), N(2), N(3, cluster="c2")],
            [J("a", cards_per_node=8), J("b", cluster="c1", cards_per_node=8)],
            [("a", "c2", (3,)), ("b", "c1", (1,))],
            id="cluster-pin",
        ),
        pytest.param(
            [N(1, cluster="c1"), N(2, cluster="c3")],
            [J("a", region="r2", cards_per_node=8), J("b", cards_per_node=8)],
            [("a", "c3", (2,)), ("b", "c1", (1,))],
            id="region-pin",
        ),
        pytest.param(
            [N(1)],
            [J("a", cluster="nowhere")],
            [("a", NO_ELIGIBLE_CLUSTER, ())],
            id="unknown-cluster",
        ),
        pytest.param(
            [N(1, cluster="c1"), N(2, cluster="c3")],
            [J("a", cluster="c1", region="r2")],
            [("a", NO_ELIGIBLE_CLUSTER, ())],
            id="contradictory-pins",
        ),
    ],
)
def test_pins(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1, network_group="g1"), N(2, network_group="g2"), N(3, network_group="g2")],
            [J("a", cards_per_node=8, nodes=2)],
            [("a", "c1", (2, 3))],
            id="same-group-preferred",
        ),
        pytest.param(
            [
                N(1, cards_free=4, network_group="g1"),
                N(2, cards_free=4, network_group="g2"),
                N(3, network_group="g2"),
            ],
            [J("a", cards_per_node=4, nodes=2)],
            [("a", "c1", (2, 3))],
            id="group-beats-node-best-fit",
        ),
        pytest.param(
            [N(i, network_group="g1" if i <= 3 else "g2") for i in range(1, 6)],
            [J("a", cards_per_node=8, nodes=2)],
            [("a", "c1", (4, 5))],
            id="best-fit-group",
        ),
        pytest.param(
            [
                N(1, network_group="g1"),
                N(2, network_group="g2"),
                N(3, network_group="g2"),
                N(4, network_group="g3"),
            ],
            [J("a", cards_per_node=8, nodes=3)],
            [("a", "c1", (1, 2, 3))],
            id="span-fewest-groups",
        ),
        pytest.param(
            [N(1, network_group="g1"), N(2, network_group="g2")]
            + [N(i, network_group="g3") for i in (3, 4, 5)],
            [J("a", cards_per_node=8, nodes=4)],
            [("a", "c1", (1, 3, 4, 5))],
            id="span-largest-group-first",
        ),
    ],
)
def test_network_group(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1), N(2, cards_free=4)], [J("a", cards_per_node=4)], [("a", "c1", (2,))], id="node"
        ),
        pytest.param(
            [N(2, cards_free=4), N(1, cards_free=4)],
            [J("a", cards_per_node=4)],
            [("a", "c1", (1,))],
            id="node-tie-id",
        ),
        pytest.param(
            [*(N(i) for i in range(1, 5)), N(5, cluster="c2")],
            [J("a", cards_per_node=8)],
            [("a", "c2", (5,))],
            id="pool",
        ),
        pytest.param(
            [N(1, cluster="c2"), N(2, cluster="c1")],
            [J("a", cards_per_node=8)],
            [("a", "c1", (2,))],
            id="pool-tie-name",
        ),
        pytest.param(
            [N(1), N(2, cards_free=2), N(3, cluster="c2"), N(4, cluster="c2", cards_free=1)],
            [J("a", cards_per_node=8)],
            [("a", "c2", (3,))],
            id="pool-counts-all-free-cards",
        ),
        pytest.param(
            [N(1, schedulable=False), N(2, cards_free=4)],
            [J("a", cards_per_node=4)],
            [("a", "c1", (2,))],
            id="skip-unschedulable",
        ),
        pytest.param(
            [N(1, schedulable=False)],
            [J("a")],
            [("a", NO_ELIGIBLE_CLUSTER, ())],
            id="only-unschedulable",
        ),
    ],
)
def test_best_fit(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


@pytest.mark.parametrize(
    ("nodes", "jobs", "expected"),
    [
        pytest.param(
            [N(1)],
            [J("a", seq=0, cards_per_node=6), J("b", seq=1, cards_per_node=4)],
            [("a", "c1", (1,)), ("b", "waiting for 4 free ascend-910b cards on 1 node", ())],
            id="no-over-allocation",
        ),
        pytest.param(
            [N(1)],
            [J("a", seq=0, cards_per_node=4), J("b", seq=1, cards_per_node=4)],
            [("a", "c1", (1,)), ("b", "c1", (1,))],
            id="share-a-node",
        ),
        pytest.param(
            [N(1), N(2)],
            [
                J("a", seq=0, cards_per_node=6),
                J("b", seq=1, cards_per_node=4),
                J("c", seq=2, cards_per_node=2),
            ],
            [("a", "c1", (1,)), ("b", "c1", (2,)), ("c", "c1", (1,))],
            id="best-fit-sees-deductions",
        ),
        pytest.param(
            [N(1), N(2)],
            [J("a", seq=0, cards_per_node=8), J("b", seq=1, cards_per_node=8, nodes=2)],
            [
                ("a", "c1", (1,)),
                ("b", "waiting for 16 free ascend-910b cards on 2 nodes (8 per node)", ()),
            ],
            id="gang-after-deduction",
        ),
    ],
)
def test_in_cycle_deduction(nodes: Nodes, jobs: Jobs, expected: Expected) -> None:
    assert run(nodes, jobs) == expected


def test_empty_snapshot_gives_no_decisions() -> None:
    assert cycle(make_snapshot([], [])) == []


def test_one_decision_per_job_in_queue_order() -> None:
    jobs = [J(f"j{i}", priority=i % 3, seq=10 - i, cards_per_node=4) for i in range(8)]
    decisions = cycle(make_snapshot([N(1), N(2)], jobs))
    assert [d.job for d in decisions] == [j.id for j in order_pending(jobs)]
    assert sum(isinstance(d, Admit) for d in decisions) == 4
    assert all(isinstance(d, Admit | Pending) for d in decisions)


def test_admit_carries_cluster_chip_family_and_cards() -> None:
    [decision] = cycle(
        make_snapshot(
            [N(7, cluster="c2", chip="ascend-310p")], [J("a", chip="ascend", cards_per_node=3)]
        )
    )
    assert decision == Admit(
        job=JobId("a"),
        cluster=ClusterName("c2"),
        chip=ChipName("ascend-310p"),
        family=ChipFamily("ascend"),
        placements=(Placement(node=NodeId(7), cards=3),),
    )


def test_same_snapshot_same_decisions() -> None:
    nodes = [N(i, cluster=f"c{i % 3 + 1}", network_group=f"g{i % 2}") for i in range(12)]
    jobs = [
        J(f"j{i}", priority=i % 2, seq=i // 2, cards_per_node=1 + i % 8, nodes=1 + i % 3)
        for i in range(20)
    ]
    snapshot = make_snapshot(nodes, jobs)
    reversed_snapshot = make_snapshot(reversed(nodes), reversed(jobs))
    assert cycle(snapshot) == cycle(snapshot) == cycle(reversed_snapshot)
