"""Table tests of quotas: Kueue cohorts (borrowing, lending, limits), caps, units, fair share.

Fleet: 8-card ``ascend-910b`` nodes in cluster ``c1`` (family ``ascend``) unless a row
says otherwise. Tenants ``a``, ``b`` and ``c`` share cohort ``co`` when they have queues.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from builders import Brief, QuotaRow, brief, make_queue, make_running, make_snapshot
from builders import make_job as J
from builders import make_node as N

from suanwang.domain.ids import ChipFamily, TenantId
from suanwang.scheduler import Admit, NodeView, Pending, PendingJob, Snapshot, cycle
from suanwang.scheduler.policy import KUEUE, SLURM, SUANWANG, Policy
from suanwang.scheduler.quota import QuotaLedger, caps_of
from suanwang.scheduler.snapshot import RunningJob, TenantQueue

ADMIT = "c1:ascend-910b"


def fleet(count: int = 4) -> list[NodeView]:
    return [N(i) for i in range(1, count + 1)]


def queues(**rows: dict[str, QuotaRow | int]) -> list[TenantQueue]:
    return [make_queue(tenant, quotas) for tenant, quotas in rows.items()]


def decide(
    jobs: Iterable[PendingJob],
    *,
    tenant_queues: Iterable[TenantQueue] = (),
    running: Iterable[RunningJob] = (),
    nodes: Iterable[NodeView] | None = None,
    policy: Policy = SUANWANG,
    **snapshot: object,
) -> list[Brief]:
    snap = make_snapshot(
        fleet() if nodes is None else nodes,
        jobs,
        queues=tenant_queues,
        running=running,
        **snapshot,  # type: ignore[arg-type]
    )
    return [brief(d) for d in cycle(snap, policy)]


def reasons(snapshot: Snapshot, policy: Policy = SUANWANG) -> dict[str, str]:
    return {d.job: d.reason for d in cycle(snapshot, policy) if isinstance(d, Pending)}


@pytest.mark.parametrize(
    ("quotas", "running", "job", "expected"),
    [
        pytest.param(
            {"a": {"ascend": 8}, "b": {"ascend": 8}},
            [],
            J("x", tenant="a", cards_per_node=8),
            ("x", ADMIT),
            id="within-nominal",
        ),
        pytest.param(
            {"a": {"ascend": (8, None, None)}, "b": {"ascend": 8}},
            [],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", ADMIT),
            id="borrows-idle-quota",
        ),
        pytest.param(
            {"a": {"ascend": (8, 4, None)}, "b": {"ascend": 8}},
            [],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", "quota"),
            id="borrowing-limit-denies",
        ),
        pytest.param(
            {"a": {"ascend": (8, 8, None)}, "b": {"ascend": 8}},
            [],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", ADMIT),
            id="borrowing-limit-exact",
        ),
        pytest.param(
            {"a": {"ascend": (8, None, None)}, "b": {"ascend": (8, None, 4)}},
            [],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", "quota"),
            id="lending-limit-denies",
        ),
        pytest.param(
            {"a": {"ascend": (8, None, None)}, "b": {"ascend": (8, None, 4)}},
            [],
            J("x", tenant="a", cards_per_node=4, nodes=3),
            ("x", ADMIT),
            id="lending-limit-allows-what-it-lends",
        ),
        pytest.param(
            {"a": {"ascend": (8, None, None)}, "b": {"ascend": 8}},
            [make_running("rb", {3: 8}, tenant="b")],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", "quota"),
            id="nothing-to-lend-when-lender-busy",
        ),
        pytest.param(
            {"a": {"metax": 8}},
            [],
            J("x", tenant="a", chip="ascend", cards_per_node=1),
            ("x", "quota"),
            id="family-absent-from-queue-forbidden",
        ),
    ],
)
def test_borrowing_and_lending(
    quotas: dict[str, dict[str, QuotaRow | int]],
    running: list[RunningJob],
    job: PendingJob,
    expected: Brief,
) -> None:
    assert decide([job], tenant_queues=queues(**quotas), running=running) == [expected]


@pytest.mark.parametrize(
    ("quotas", "job", "reason"),
    [
        pytest.param(
            {"a": {"ascend": (8, 4, None)}, "b": {"ascend": 8}},
            J("x", tenant="a", cards_per_node=8, nodes=2),
            "quota: tenant a would hold 16 of 12 ascend cards",
            id="own-limit",
        ),
        pytest.param(
            {"a": {"ascend": (8, None, None)}, "b": {"ascend": (8, None, 4)}},
            J("x", tenant="a", cards_per_node=8, nodes=2),
            "quota: cohort co has 12 of 12 lendable ascend cards free",
            id="cohort-short",
        ),
        pytest.param(
            {"a": {"metax": 8}},
            J("x", tenant="a", chip="ascend"),
            "quota: tenant a has no ascend quota",
            id="no-quota",
        ),
    ],
)
def test_refusal_reasons(
    quotas: dict[str, dict[str, QuotaRow | int]], job: PendingJob, reason: str
) -> None:
    snapshot = make_snapshot(fleet(), [job], queues=queues(**quotas))
    assert reasons(snapshot) == {"x": reason}


def test_admit_says_whether_it_borrows() -> None:
    snapshot = make_snapshot(
        fleet(),
        [J("own", tenant="a", cards_per_node=8), J("lent", tenant="a", seq=1, cards_per_node=8)],
        queues=queues(a={"ascend": (8, None, None)}, b={"ascend": 8}),
    )
    admits = {d.job: d.borrowing for d in cycle(snapshot) if isinstance(d, Admit)}
    assert admits == {"own": False, "lent": True}


def test_standalone_queue_never_borrows() -> None:
    queue = make_queue("a", {"ascend": (8, None, None)}, cohort=None)
    jobs = [J("x", tenant="a", cards_per_node=8, nodes=2)]
    assert decide(jobs, tenant_queues=[queue]) == [("x", "quota")]


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        pytest.param(None, ("x", ADMIT), id="no-queue-no-cap-unlimited"),
        pytest.param({"t9": {"ascend": 8}}, ("x", "quota"), id="legacy-cap-applies"),
        pytest.param({"t9": {"metax": 0}}, ("x", ADMIT), id="legacy-cap-other-family"),
    ],
)
def test_tenants_without_queue_keep_caps(
    caps: dict[str, dict[str, int]] | None, expected: Brief
) -> None:
    jobs = [J("x", tenant="t9", cards_per_node=8, nodes=2)]
    assert decide(jobs, tenant_queues=queues(a={"ascend": 8}), quotas=caps) == [expected]


@pytest.mark.parametrize(
    ("chip_units", "quota", "running", "job", "expected"),
    [
        pytest.param(
            {"ascend-910b": 2.0, "metax-c500": 1.0},
            {"units": 20},
            [make_running("r", {1: 8}, tenant="a")],
            J("x", tenant="a", chip="metax", cards_per_node=4),
            ("x", "c1:metax-c500"),
            id="units-cover-every-family",
        ),
        pytest.param(
            {"ascend-910b": 2.0, "metax-c500": 1.0},
            {"units": 20},
            [make_running("r", {1: 8}, tenant="a")],
            J("x", tenant="a", chip="metax", cards_per_node=8),
            ("x", "quota"),
            id="units-cap-the-sum",
        ),
        pytest.param(
            {"ascend-910b": 2.0},
            {"ascend": 16, "units": 20},
            [],
            J("x", tenant="a", cards_per_node=8, nodes=2),
            ("x", "quota"),
            id="units-bind-before-family",
        ),
        pytest.param(
            {},
            {"units": 8},
            [],
            J("x", tenant="a", chip="metax", cards_per_node=8),
            ("x", "c1:metax-c500"),
            id="chip-without-units-counts-one",
        ),
    ],
)
def test_units_quota(
    chip_units: dict[str, float],
    quota: dict[str, QuotaRow | int],
    running: list[RunningJob],
    job: PendingJob,
    expected: Brief,
) -> None:
    nodes = [N(1), N(2), N(3, chip="metax-c500"), N(4, chip="metax-c500")]
    queue = make_queue("a", quota, cohort=None)
    got = decide([job], tenant_queues=[queue], running=running, nodes=nodes, chip_units=chip_units)
    assert got == [expected]


def test_units_reason_and_legacy_units_cap() -> None:
    nodes = [N(1), N(2, chip="metax-c500")]
    job = J("x", tenant="a", chip="any", cards_per_node=8)
    snapshot = make_snapshot(
        nodes, [job], quotas={"a": {"units": 10}}, chip_units={"ascend-910b": 2.0}
    )
    assert [brief(d) for d in cycle(snapshot)] == [("x", "c1:metax-c500")]
    tight = make_snapshot(nodes, [job], quotas={"a": {"units": 4}})
    assert reasons(tight) == {"x": "quota: tenant a would hold 8 of 4 units"}


@pytest.mark.parametrize(
    ("weights", "held", "admitted"),
    [
        pytest.param({"a": 1.0, "b": 1.0}, {"a": 16, "b": 8}, "pb", id="lower-share-first"),
        pytest.param({"a": 1.0, "b": 1.0}, {"a": 16, "b": 12}, "pb", id="equal-weights"),
        pytest.param({"a": 4.0, "b": 1.0}, {"a": 16, "b": 12}, "pa", id="weight-divides-share"),
    ],
)
def test_fair_share_orders_borrowers(
    weights: dict[str, float], held: dict[str, int], admitted: str
) -> None:
    """a and b (nominal 8 each) borrow from c (24, idle); room for one more 8-card job."""
    tenant_queues = [
        make_queue(t, {"ascend": (8, None, None)}, weight=w) for t, w in weights.items()
    ]
    tenant_queues.append(make_queue("c", {"ascend": 24}))
    running, node = [], 1
    for tenant, cards in held.items():
        while cards > 0:
            running.append(make_running(f"r{node}", {node: min(cards, 8)}, tenant=tenant))
            cards, node = cards - 8, node + 1
    jobs = [
        J("pa", tenant="a", seq=0, cards_per_node=8),
        J("pb", tenant="b", seq=1, cards_per_node=8),
    ]
    nodes = [N(i) for i in range(1, node + 1)]
    snapshot = make_snapshot(nodes, jobs, queues=tenant_queues, running=running, now=1_000.0)
    assert [d.job for d in cycle(snapshot) if isinstance(d, Admit)] == [admitted]


def test_without_fair_share_borrowers_go_in_submit_order() -> None:
    tenant_queues = [
        make_queue("a", {"ascend": (8, None, None)}),
        make_queue("b", {"ascend": (8, None, None)}),
        make_queue("c", {"ascend": 24}),
    ]
    running = [make_running("r1", {1: 8}, tenant="a"), make_running("r2", {2: 8}, tenant="a")]
    running.append(make_running("r3", {3: 8}, tenant="b"))
    jobs = [
        J("pa", tenant="a", seq=0, cards_per_node=8),
        J("pb", tenant="b", seq=1, cards_per_node=8),
    ]
    snapshot = make_snapshot(fleet(), jobs, queues=tenant_queues, running=running, now=1_000.0)
    assert [brief(d) for d in cycle(snapshot, KUEUE)] == [("pa", ADMIT), ("pb", "capacity")]
    assert [brief(d) for d in cycle(snapshot, SUANWANG)] == [("pb", ADMIT), ("pa", "capacity")]


def test_jobs_within_nominal_go_before_borrowers() -> None:
    tenant_queues = [make_queue("a", {"ascend": (0, None, None)}), make_queue("b", {"ascend": 8})]
    jobs = [
        J("borrower", tenant="a", priority=5, cards_per_node=8),
        J("owner", tenant="b", priority=0, seq=1, cards_per_node=8),
    ]
    got = decide(jobs, tenant_queues=tenant_queues, nodes=[N(1)])
    assert got == [("owner", ADMIT), ("borrower", "quota")]


@pytest.mark.parametrize(
    ("holder", "borrower"),
    [
        pytest.param("c", ("borrower", "quota"), id="reclaim-could-serve-the-lender"),
        pytest.param("z", ("borrower", ADMIT), id="outsider-holds-the-cards"),
    ],
)
def test_no_borrowing_while_a_lender_waits(holder: str, borrower: Brief) -> None:
    """Lender a waits (within nominal) for two nodes; node 2 is held by ``holder``. If
    that is a cohort member, b borrowing now would make it reclaimable next cycle."""
    tenant_queues = [
        make_queue("a", {"ascend": 16}),
        make_queue("b", {"ascend": (0, None, None)}),
        make_queue("c", {"ascend": 8}),
    ]
    jobs = [
        J("lender", tenant="a", cards_per_node=8, nodes=2),
        J("borrower", tenant="b", seq=1, cards_per_node=8),
    ]
    busy = [make_running("r", {2: 8}, tenant=holder)]
    snapshot = make_snapshot([N(1), N(2)], jobs, queues=tenant_queues, running=busy)
    assert [brief(d) for d in cycle(snapshot)] == [("lender", "capacity"), borrower]
    if borrower[1] == "quota":
        assert reasons(snapshot)["borrower"] == (
            "quota: cohort co lends no ascend cards while a lender waits for them"
        )


@pytest.mark.parametrize(
    ("row", "cap"),
    [
        pytest.param((8, 4, None), 12, id="nominal-plus-borrowing"),
        pytest.param((8, None, None), None, id="unlimited-borrowing-no-cap"),
    ],
)
def test_caps_mode_derives_caps_from_queues(row: QuotaRow, cap: int | None) -> None:
    queue = make_queue("a", {"ascend": row})
    caps = caps_of(queue, [ChipFamily("ascend"), ChipFamily("metax")])
    assert caps.get(ChipFamily("ascend")) == cap
    assert caps[ChipFamily("metax")] == 0


def test_caps_policies_ignore_cohorts_but_keep_limits() -> None:
    tenant_queues = [make_queue("a", {"ascend": (8, 8, None)}), make_queue("b", {"ascend": 8})]
    running = [make_running("rb", {1: 8}, tenant="b")]
    jobs = [J("x", tenant="a", cards_per_node=8, nodes=2)]
    kueue = decide(jobs, tenant_queues=tenant_queues, running=running, policy=KUEUE)
    slurm = decide(jobs, tenant_queues=tenant_queues, running=running, policy=SLURM)
    assert kueue == [("x", "quota")]  # b uses its own nominal: nothing to lend
    assert slurm == [("x", ADMIT)]  # a plain cap of 16 cards


def test_explicit_caps_win_over_queues_in_caps_mode() -> None:
    tenant_queues = [make_queue("a", {"ascend": (8, None, None)})]
    snapshot = make_snapshot(
        fleet(),
        [J("x", tenant="a", cards_per_node=8, nodes=2)],
        queues=tenant_queues,
        quotas={"a": {"ascend": 8}},
    )
    assert [brief(d) for d in cycle(snapshot, SLURM)] == [("x", "quota")]


def test_usage_and_running_count_once() -> None:
    running = [make_running("r", {1: 8}, tenant="a")]
    both = make_snapshot(fleet(), [], running=running, usage={"a": {"ascend": 8}})
    alone = make_snapshot(fleet(), [], usage={"a": {"ascend": 8}})
    for snapshot in (both, alone):
        ledger = QuotaLedger(snapshot)
        assert ledger.held_cards(TenantId("a"), ChipFamily("ascend")) == 8
