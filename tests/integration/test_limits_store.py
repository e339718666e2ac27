"""Gateway limits survive the database (SQLite and PostgreSQL), the quota period included."""

from __future__ import annotations

import pytest

from suanwang.domain.limits import KeyLimits, QuotaPeriod, TenantLimits
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.limits import GatewayLimits
from suanwang.services.platform import Platform

OPERATOR = Principal("system", Scope.OPERATOR, None)


@pytest.mark.parametrize(
    "limits",
    [
        TenantLimits(rpm=60, token_quota=5000, period=QuotaPeriod.MONTH),
        TenantLimits(tpm=900, token_quota=10, period_s=86400),
    ],
    ids=["month", "seconds"],
)
def test_tenant_limits_round_trip(platform: Platform, limits: TenantLimits) -> None:
    platform.tenancy.create_tenant("acme", "Acme", {})
    service = GatewayLimits(platform.uows, platform.clock)
    service.set_tenant_limits(OPERATOR, "acme", limits)
    assert service.tenant_limits(OPERATOR, "acme") == limits
    key = platform.tenancy.create_key(
        OPERATOR, tenant="acme", scope=Scope.TENANT_MEMBER, name="k", expires_in_s=None
    )
    service.set_key_limits(OPERATOR, key.record.id, KeyLimits(rpm=5))
    assert service.limits_for("acme", key.record.id).tenant == limits
