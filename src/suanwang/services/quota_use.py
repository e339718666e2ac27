"""A tenant's quota use now: per chip family the nominal quota, the cards in use and how
many of them are borrowed from its cohort, from the snapshot the scheduler builds
(:func:`~suanwang.services.snapshots.build_snapshot`) read through its
:class:`~suanwang.scheduler.quota.QuotaLedger`. Another tenant's is 404, as a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.domain.chips import Catalogue
from suanwang.domain.ids import ChipFamily, TenantId
from suanwang.domain.tenancy import Principal
from suanwang.ports import Clock, UnitOfWorkFactory
from suanwang.scheduler.borrowing import FamilyUse, family_use
from suanwang.scheduler.quota import QuotaLedger
from suanwang.scheduler.snapshot import FlavorQuota
from suanwang.services.snapshots import build_snapshot
from suanwang.services.tenancy import Tenancy


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """One tenant's use now, per family (see :class:`~suanwang.scheduler.borrowing.FamilyUse`)."""

    tenant: str
    cohort: str | None
    families: tuple[FamilyUse, ...]


class QuotaUseView:
    """Reads a tenant's quota use now (no writes)."""

    def __init__(
        self, uows: UnitOfWorkFactory, clock: Clock, catalogue: Catalogue, tenancy: Tenancy
    ) -> None:
        self._uows = uows
        self._clock = clock
        self._catalogue = catalogue
        self._tenancy = tenancy

    def of(self, principal: Principal, name: str) -> QuotaUse:
        """``name``'s use now (404 unless the principal may see the tenant)."""
        tenant = self._tenancy.tenant(principal, name)
        with self._uows() as uow:
            now = self._clock.now()  # held cards are the tenant's own running work's
            snapshot = build_snapshot(uow, [], self._catalogue, now, running_of=tenant.id)
        ledger = QuotaLedger(snapshot)
        quotas = {
            ChipFamily(f): FlavorQuota(q.nominal, q.borrowing_limit, q.lending_limit)
            for f, q in tenant.quota.items()
        }
        families = frozenset(node.family for node in snapshot.nodes)
        rows = family_use(ledger, TenantId(tenant.id), quotas, families)
        return QuotaUse(tenant.id, tenant.cohort, tuple(rows))
