"""Tenants, key scopes and what each scope may do.

The operator owns the platform; a tenant owns its jobs and keys. A key has one
:class:`Scope`; scopes are ordered, and nobody may mint a key broader than their own.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import TenantId

UNITS = "units"
"""Pseudo chip family of quotas stated in normalised compute units (V100-equivalents)."""
TENANT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
MAX_QUOTA_CARDS = 1_000_000_000
"""The largest card count a quota or limit may state (it is stored in a 32-bit column)."""
MAX_WEIGHT = 1000.0


class Scope(enum.StrEnum):
    """What a key may do, broadest first."""

    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"
    READ_ONLY = "read-only"

    @property
    def rank(self) -> int:
        """Larger is broader."""
        return {"operator": 3, "tenant-admin": 2, "tenant-member": 1, "read-only": 0}[self.value]

    def covers(self, other: Scope) -> bool:
        """Whether a holder of ``self`` may grant ``other``."""
        return self.rank >= other.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's id, scope and tenant (``None`` for the operator).

    ``key_prefix`` is the key's public prefix; ``request_id`` names the API request it came
    with (the audit log records both).
    """

    key_id: str
    scope: Scope
    tenant_id: TenantId | None
    key_prefix: str | None = None
    request_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.scope is Scope.OPERATOR

    def can_see_tenant(self, tenant_id: str) -> bool:
        """Operators see every tenant; everyone else only their own."""
        return self.is_operator or self.tenant_id == tenant_id


LOCAL_OPERATOR = Principal("system", Scope.OPERATOR, None)
"""The operator acting on the server's machine without a key (``suanwang init``)."""


def check_tenant_name(name: str) -> str:
    """A tenant name: 3–40 lowercase letters, digits and dashes, starting with a letter."""
    if not TENANT_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid tenant name {name!r}",
            field="name",
            hint="3-40 characters: lowercase letters, digits and '-', starting with a letter",
        )
    return name


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    """A tenant's quota for one chip family, in cards (Kueue's flavor quota).

    ``nominal`` cards are the tenant's own; in a cohort it may borrow up to
    ``borrowing_limit`` more (None = no limit) and lend at most ``lending_limit`` of its
    unused nominal (None = all of it). Outside a cohort only ``nominal`` counts.
    """

    nominal: int
    borrowing_limit: int | None = 0
    lending_limit: int | None = None


def check_quota_specs(
    quota: dict[str, QuotaSpec], families: frozenset[str]
) -> dict[str, QuotaSpec]:
    """Validate a quota map of :class:`QuotaSpec` (families known, limits sane)."""
    check_quota({f: q.nominal for f, q in quota.items()}, families)
    for family, spec in quota.items():
        for name, value in (
            ("borrowing_limit", spec.borrowing_limit),
            ("lending_limit", spec.lending_limit),
        ):
            if value is not None and not 0 <= value <= MAX_QUOTA_CARDS:
                raise ValidationError(
                    f"{name} is 0 to {MAX_QUOTA_CARDS:,} cards", field=f"quota.{family}.{name}"
                )
        if spec.lending_limit is not None and spec.lending_limit > spec.nominal:
            raise ValidationError(
                "lending_limit cannot exceed nominal", field=f"quota.{family}.lending_limit"
            )
    return dict(sorted(quota.items()))


def check_quota(quota: dict[str, int], families: frozenset[str]) -> dict[str, int]:
    """A quota maps chip families to a maximum number of cards in use at once."""
    for family, cards in quota.items():
        if family not in families:
            raise ValidationError(
                f"unknown chip family {family!r} in quota",
                field=f"quota.{family}",
                hint=f"families: {', '.join(sorted(families))}",
            )
        if not 0 <= cards <= MAX_QUOTA_CARDS:
            raise ValidationError(
                f"a quota is 0 to {MAX_QUOTA_CARDS:,} cards", field=f"quota.{family}"
            )
    return dict(sorted(quota.items()))


COHORT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def check_queue(cohort: str | None, weight: float) -> tuple[str | None, float]:
    """A cohort name (or None) and a fair-share weight in (0, 1000]."""
    if cohort is not None and not COHORT_NAME.fullmatch(cohort):
        raise ValidationError(
            f"invalid cohort name {cohort!r}",
            field="cohort",
            hint="lowercase letters, digits and '-', starting with a letter",
        )
    if not 0 < weight <= MAX_WEIGHT:
        raise ValidationError(f"weight must be in (0, {MAX_WEIGHT:g}]", field="weight")
    return cohort, weight
