"""Borrowing per chip family, read from the scheduler's quota ledger: the use above the
nominal quota, in a cohort only."""

from __future__ import annotations

import pytest

from suanwang.domain.ids import ChipFamily, TenantId
from suanwang.scheduler.borrowing import family_use
from suanwang.scheduler.quota import QuotaLedger
from suanwang.scheduler.snapshot import FlavorQuota, Snapshot, TenantQueue


@pytest.mark.parametrize(
    ("cohort", "held", "expected"),
    [
        ("lab", 6, (4, 4, 6.0, 2.0)),
        ("lab", 3, (4, 4, 3.0, 0.0)),
        (None, 6, (4, None, 6.0, 0.0)),  # outside a cohort nothing is borrowed
    ],
)
def test_borrowed_is_the_use_above_nominal_in_a_cohort(
    cohort: str | None, held: int, expected: tuple[object, ...]
) -> None:
    tenant, ascend = TenantId("t"), ChipFamily("ascend")
    quotas = {ascend: FlavorQuota(4, 4, None)}
    queues = {} if cohort is None else {tenant: TenantQueue(tenant, quotas, cohort)}
    snapshot = Snapshot(
        now=0.0, nodes=(), pending=(), usage={tenant: {ascend: held}}, queues=queues
    )
    rows = family_use(QuotaLedger(snapshot), tenant, quotas, frozenset({ascend, ChipFamily("gpu")}))
    assert [(r.nominal, r.borrowing_limit, r.in_use, r.borrowed) for r in rows] == [expected]


def test_a_gpu_family_without_quota_shows_only_when_in_use() -> None:
    tenant, gpu = TenantId("t"), ChipFamily("gpu")
    snapshot = Snapshot(now=0.0, nodes=(), pending=(), usage={tenant: {gpu: 2}})
    rows = family_use(QuotaLedger(snapshot), tenant, {}, frozenset({gpu, ChipFamily("npu")}))
    assert [(r.family, r.nominal, r.in_use, r.borrowed) for r in rows] == [("gpu", None, 2.0, 0.0)]
