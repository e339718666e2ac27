"""What a tenant holds now against its quota, per chip family: the part above its nominal
quota is borrowed from its cohort. Pure: read from a :class:`~.quota.QuotaLedger`, so the
numbers are the ones the scheduler's next cycle starts from.

Only cohort members borrow (Kueue): outside a cohort the nominal quota is a cap and
nothing is borrowed. The :data:`~.quota.UNITS` row counts normalised units, not cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from suanwang.domain.ids import ChipFamily, TenantId
from suanwang.scheduler.quota import QuotaLedger
from suanwang.scheduler.snapshot import FlavorQuota


@dataclass(frozen=True, slots=True)
class FamilyUse:
    """One chip family (or units) of one tenant.

    Attributes:
        family: The chip family, or ``units``.
        nominal: The nominal quota (``None``: no quota, unlimited).
        borrowing_limit: At most this much above nominal (``None``: no limit).
        in_use: Cards (units for ``units``) held now, preempted ones still stopping included.
        borrowed: The part of ``in_use`` above ``nominal`` (cohort members only).
    """

    family: ChipFamily
    nominal: int | None
    borrowing_limit: int | None
    in_use: float
    borrowed: float


def family_use(
    ledger: QuotaLedger,
    tenant: TenantId,
    quotas: Mapping[ChipFamily, FlavorQuota],
    families: frozenset[ChipFamily],
) -> list[FamilyUse]:
    """Every dimension with a quota, and every chip family of ``families`` (the fleet's)
    the tenant holds cards of, sorted by name."""
    in_cohort = ledger.cohort_of(tenant) is not None
    rows: list[FamilyUse] = []
    for family in sorted(set(quotas) | families):
        held = ledger.held_cards(tenant, family)
        quota = quotas.get(family)
        if quota is None and held <= 0:
            continue
        borrowed = 0.0
        if quota is not None and in_cohort:
            borrowed = max(0.0, held - quota.nominal)
        rows.append(
            FamilyUse(
                family=family,
                nominal=None if quota is None else quota.nominal,
                borrowing_limit=None if quota is None or not in_cohort else quota.borrowing_limit,
                in_use=held,
                borrowed=borrowed,
            )
        )
    return rows
