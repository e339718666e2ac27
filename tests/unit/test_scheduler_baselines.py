"""The baselines choose among acceptable pools without a bias by name.

Before, ``fifo`` and ``kueue`` took the first fitting pool by (cluster, chip) name and
``slurm`` broke best-fit ties by name, so on a V100/P100/K80 fleet every blind admission
went to ``nvidia-k80`` first. Now: ``fifo`` draws a fitting pool per job (seeded by the
job id, Gavel's FIFO); ``slurm`` takes the best fit (equal node weights), ties drawn;
``kueue`` follows the flavour order of the tenant's queue, then the least allocated pool.
"""

from __future__ import annotations

from collections import Counter

import pytest
from builders import make_job as J
from builders import make_node as N
from builders import make_queue, make_snapshot

from suanwang.scheduler import Admit, NodeView, PendingJob, cycle
from suanwang.scheduler.fit import PoolKey
from suanwang.scheduler.placement import draw
from suanwang.scheduler.policy import FIFO, KUEUE, SLURM, Policy

CHIPS = ("ascend-910b", "hygon-k100", "metax-c500")
"""``ascend-910b`` sorts first by name: a name-biased choice takes it every time."""


def fleet(free: dict[str, int] | None = None, nodes: int = 8) -> list[NodeView]:
    """``nodes`` 8-card nodes of each chip in cluster ``c1``; ``free`` cards per node."""
    found: list[NodeView] = []
    for chip in CHIPS:
        for _ in range(nodes):
            cards = (free or {}).get(chip, 8)
            found.append(N(len(found) + 1, chip=chip, cards_free=cards))
    return found


def jobs(count: int, cards: int = 1) -> list[PendingJob]:
    return [J(f"j{i:02d}", seq=i, chip="any", cards_per_node=cards) for i in range(count)]


def chips_of(
    policy: Policy, pending: list[PendingJob], nodes: list[NodeView], **kw: object
) -> Counter[str]:
    snapshot = make_snapshot(nodes, pending, **kw)  # type: ignore[arg-type]
    return Counter(d.chip for d in cycle(snapshot, policy) if isinstance(d, Admit))


@pytest.mark.parametrize("policy", [FIFO, SLURM, KUEUE], ids=lambda p: p.name)
def test_blind_admissions_are_not_all_on_the_chip_that_sorts_first(policy: Policy) -> None:
    """30 jobs, each alone on an idle fleet of three equal pools: every pool is chosen for
    some (by name, all 30 would go to ``ascend-910b``)."""
    counts: Counter[str] = Counter()
    for job in jobs(30):
        counts += chips_of(policy, [job], fleet())
    assert sum(counts.values()) == 30
    assert set(counts) == set(CHIPS), counts


def test_fifo_spreads_one_queue_over_equal_pools() -> None:
    counts = chips_of(FIFO, jobs(30), fleet())
    assert sum(counts.values()) == 30
    assert set(counts) == set(CHIPS), counts


def test_slurm_packs_after_its_first_draw() -> None:
    """Best fit: once one pool is used it is the best fit for the next one-card jobs."""
    counts = chips_of(SLURM, jobs(30), fleet())
    assert sorted(counts.values()) == [30]


def test_fifo_draws_per_job_and_the_draw_is_stable() -> None:
    first = chips_of(FIFO, jobs(12), fleet())
    assert chips_of(FIFO, jobs(12), fleet()) == first
    key = PoolKey("c1", "metax-c500", "r1", "metax", False)  # type: ignore[arg-type]
    assert draw(jobs(1)[0], key) == draw(jobs(1)[0], key)


def test_slurm_takes_the_best_fit_whatever_its_name() -> None:
    """Equal node weights: the pool left with the fewest free cards wins (metax here)."""
    nodes = fleet({"ascend-910b": 8, "hygon-k100": 6, "metax-c500": 2}, nodes=1)
    assert chips_of(SLURM, jobs(1, cards=2), nodes) == Counter({"metax-c500": 1})


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (("metax", "ascend", "hygon-dcu"), "metax-c500"),
        (("hygon-dcu", "metax", "ascend"), "hygon-k100"),
        (("ascend", "hygon-dcu", "metax"), "ascend-910b"),
    ],
)
def test_kueue_follows_the_flavour_order_of_the_queue(
    order: tuple[str, ...], expected: str
) -> None:
    queue = make_queue("t1", dict.fromkeys(order, 64), cohort=None)
    counts = chips_of(KUEUE, jobs(6), fleet(), queues=[queue])
    assert counts == Counter({expected: 6})


def test_kueue_without_a_queue_takes_the_least_allocated_pool() -> None:
    nodes = fleet({"ascend-910b": 2, "hygon-k100": 7, "metax-c500": 4}, nodes=1)
    assert chips_of(KUEUE, jobs(1), nodes) == Counter({"hygon-k100": 1})
