"""Queue policy: the order pending jobs are considered in, and the quotas they face.

:func:`order_pending` sorts the queue (priority first, then submission order, then id);
:class:`QuotaLedger` tracks, within one cycle, how many cards of each chip family every
tenant holds (``Snapshot.usage`` plus what the cycle has admitted) against its quota.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from suanwang.domain.ids import ChipFamily, JobId, TenantId
from suanwang.scheduler.snapshot import PendingJob


def queue_key(job: PendingJob) -> tuple[int, int, JobId]:
    """Sort key of a pending job: higher priority first, then smaller ``seq``, then id."""
    return (-job.priority, job.seq, job.id)


def order_pending(pending: Iterable[PendingJob]) -> list[PendingJob]:
    """The pending jobs in the order a cycle considers them.

    The order depends only on the jobs, never on the order they were given in.

    Args:
        pending: Jobs waiting for a placement, in any order.

    Returns:
        A new list sorted by :func:`queue_key`.
    """
    return sorted(pending, key=queue_key)


@dataclass(slots=True)
class QuotaLedger:
    """Cards held per tenant and chip family during one cycle, against quotas.

    Mutable on purpose and local to one cycle: :meth:`charge` records an admission so
    later jobs of the same tenant see it.

    Attributes:
        quotas: ``quotas[tenant][family]`` caps the cards held at once; a tenant or
            family missing from the map is unlimited.
        usage: Cards held when the cycle starts, ``usage[tenant][family]``.
        admitted_cards: Cards this cycle has admitted so far, by (tenant, family).
    """

    quotas: Mapping[TenantId, Mapping[ChipFamily, int]]
    usage: Mapping[TenantId, Mapping[ChipFamily, int]]
    admitted_cards: dict[tuple[TenantId, ChipFamily], int] = field(default_factory=dict)

    def held_cards(self, tenant: TenantId, family: ChipFamily) -> int:
        """Cards of ``family`` the tenant holds now, counting this cycle's admissions."""
        start = self.usage.get(tenant, {}).get(family, 0)
        return start + self.admitted_cards.get((tenant, family), 0)

    def cap_cards(self, tenant: TenantId, family: ChipFamily) -> int | None:
        """The tenant's cap on ``family`` cards, or None when unlimited."""
        return self.quotas.get(tenant, {}).get(family)

    def allows(self, tenant: TenantId, family: ChipFamily, cards: int) -> bool:
        """Whether the tenant may take ``cards`` more cards of ``family``.

        Taking no cards is always allowed, even by a tenant already over its cap.
        """
        cap = self.cap_cards(tenant, family)
        if cap is None or cards <= 0:
            return True
        return self.held_cards(tenant, family) + cards <= cap

    def charge(self, tenant: TenantId, family: ChipFamily, cards: int) -> None:
        """Record that the tenant now also holds ``cards`` cards of ``family``."""
        key = (tenant, family)
        self.admitted_cards[key] = self.admitted_cards.get(key, 0) + cards

    def refusal(self, tenant: TenantId, families: Iterable[ChipFamily], cards: int) -> str:
        """Why the tenant may not take ``cards`` more cards of any of ``families``.

        Example: ``"quota: tenant acme would hold 24 of 16 ascend cards"``.
        """
        parts = []
        for family in sorted(set(families)):
            held = self.held_cards(tenant, family) + cards
            parts.append(f"{held} of {self.cap_cards(tenant, family)} {family} cards")
        return f"quota: tenant {tenant} would hold " + "; ".join(parts)
