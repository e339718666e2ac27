"""Tenant identities on hosts that sandbox local runs: one numeric uid per tenant.

A tenant gets the next free uid of ``SUANWANG_TENANT_UID_RANGE`` on its first local run,
stored in the database and never given to another tenant (rows are never deleted). No
account is created on the host: the sandbox switches to the number directly, so the operator
only has to keep the range free of real users. A uid stored under an earlier range is kept.
"""

from __future__ import annotations

from suanwang.domain.errors import ValidationError
from suanwang.domain.workloads import UidRange
from suanwang.ports import Clock, UnitOfWork, UnitOfWorkFactory


class TenantUidAllocator:
    """:class:`~suanwang.ports.TenantUids` on the database (allocation serialised by the
    scheduler lock, so two control planes never hand one uid to two tenants)."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, uids: UidRange) -> None:
        self._uows = uows
        self._clock = clock
        self._range = uids
        self._known: dict[str, int] = {}
        """Uids never change once stored, so each tenant is read from the database once."""

    def uid_for(self, tenant: str) -> int:
        """The tenant's uid; allocates the next free one of the range on first use.

        Raises:
            ValidationError: the range has no uid left.
        """
        known = self._known.get(tenant)
        if known is not None:
            return known
        with self._uows() as uow:
            uid = uow.tenancy.local_uid(tenant)
            if uid is None:
                uow.lock_scheduler()
                uid = uow.tenancy.local_uid(tenant) or self._allocate(uow, tenant)
        self._known[tenant] = uid
        return uid

    def _allocate(self, uow: UnitOfWork, tenant: str) -> int:
        highest = uow.tenancy.highest_local_uid(self._range.first, self._range.last)
        uid = self._range.first if highest is None else highest + 1
        if uid not in self._range:
            raise ValidationError(
                f"no uid left in SUANWANG_TENANT_UID_RANGE {self._range} for tenant {tenant!r}",
                field="tenant",
                hint="the operator widens the range (keep it free of real users)",
            )
        uow.tenancy.add_local_uid(tenant, uid, self._clock.now())
        uow.commit()
        return uid
