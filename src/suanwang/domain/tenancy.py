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

TENANT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")


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
    """Who is calling: a key's id, scope and tenant (``None`` for the operator)."""

    key_id: str
    scope: Scope
    tenant_id: TenantId | None

    @property
    def is_operator(self) -> bool:
        return self.scope is Scope.OPERATOR

    def can_see_tenant(self, tenant_id: str) -> bool:
        """Operators see every tenant; everyone else only their own."""
        return self.is_operator or self.tenant_id == tenant_id


def check_tenant_name(name: str) -> str:
    """A tenant name: 3–40 lowercase letters, digits and dashes, starting with a letter."""
    if not TENANT_NAME.match(name):
        raise ValidationError(
            f"invalid tenant name {name!r}",
            field="name",
            hint="3-40 characters: lowercase letters, digits and '-', starting with a letter",
        )
    return name


def check_quota(quota: dict[str, int], families: frozenset[str]) -> dict[str, int]:
    """A quota maps chip families to a maximum number of cards in use at once."""
    for family, cards in quota.items():
        if family not in families:
            raise ValidationError(
                f"unknown chip family {family!r} in quota",
                field=f"quota.{family}",
                hint=f"families: {', '.join(sorted(families))}",
            )
        if cards < 0:
            raise ValidationError("a quota is zero or more cards", field=f"quota.{family}")
    return dict(sorted(quota.items()))
