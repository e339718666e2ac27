"""Gateway limits: rates per key and tenant, and a tenant's token quota per period.

Rates (requests and tokens per minute) are counted in fixed 60-second windows aligned to
the epoch. A tenant's token quota is counted per period: calendar months in UTC
(``period="month"``, what operators bill by) or fixed windows of ``period_s`` seconds aligned
to the epoch (``period="seconds"``, the default, kept for existing limits). Quota is
enforced by *reservation*: before calling an engine the gateway reserves an upper bound of
the request's tokens; afterwards it settles the reservation to the tokens actually billed
(never more than reserved), or releases it.
``used + reserved + asked <= quota`` is checked and applied atomically, so concurrent
requests can never overshoot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from suanwang.domain.errors import DomainError, ValidationError

RATE_WINDOW_S = 60
DEFAULT_PERIOD_S = 30 * 24 * 3600
MAX_LIMIT = 10**15


class QuotaPeriod(StrEnum):
    """How a tenant's token quota is renewed."""

    SECONDS = "seconds"
    """Fixed windows of ``period_s`` seconds aligned to the epoch."""
    MONTH = "month"
    """Calendar months, UTC: the quota renews at 00:00 UTC on the 1st (``period_s`` unused)."""


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    token_quota: int | None = None
    period_s: int = DEFAULT_PERIOD_S
    period: QuotaPeriod = QuotaPeriod.SECONDS

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "token_quota"):
            _check_limit(name, getattr(self, name))
        if not 60 <= self.period_s <= 366 * 24 * 3600:
            raise ValidationError(
                "period_s must be between 60 s and one year", field="period_s", hint="e.g. 86400"
            )


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Per-key rates and model allow-list (``models=None``: every model)."""

    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_limit("rpm", self.rpm)
        _check_limit("tpm", self.tpm)
        if self.models is not None and any(not m or len(m) > 128 for m in self.models):
            raise ValidationError("model names must be 1-128 characters", field="models")

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Limits:
    """Everything the gateway enforces for one (tenant, key)."""

    tenant: TenantLimits = field(default_factory=TenantLimits)
    key: KeyLimits = field(default_factory=KeyLimits)

    @property
    def unlimited(self) -> bool:
        t, k = self.tenant, self.key
        return t.rpm is t.tpm is t.token_quota is k.rpm is k.tpm is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held for one request until it is settled or its ``expires_at`` passes."""

    id: str
    tenant: str
    key_id: str
    tokens: int
    minute: int
    """Start of the rate window the request was admitted in."""
    quota_window: int
    """Start of the quota period (0 when the tenant has no quota)."""
    expires_at: float
    counted: bool = True
    """False for requests under no limit: nothing is held, settling is a no-op."""


class RateLimited(DomainError):
    """A requests- or tokens-per-minute limit is reached; retry after ``retry_after_s``."""

    status = 429

    def __init__(self, message: str, *, retry_after_s: int, field: str) -> None:
        super().__init__(message, field=field, hint=f"retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class QuotaExhausted(DomainError):
    """The tenant's token quota for this period cannot cover the request."""

    status = 429


def minute_of(now: float) -> int:
    return int(now // RATE_WINDOW_S) * RATE_WINDOW_S


def quota_window_of(now: float, period_s: int) -> int:
    return int(now // period_s) * period_s


def month_start(now: float) -> int:
    """The epoch second at which the calendar month (UTC) containing ``now`` began."""
    day = datetime.fromtimestamp(now, UTC)
    return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp())


def quota_window(now: float, tenant: TenantLimits) -> int:
    """The start of ``tenant``'s quota period containing ``now`` (epoch seconds)."""
    if tenant.period is QuotaPeriod.MONTH:
        return month_start(now)
    return quota_window_of(now, tenant.period_s)


def quota_span_s(tenant: TenantLimits) -> int:
    """The longest a quota period of ``tenant`` lasts (31 days for calendar months)."""
    return 31 * 86400 if tenant.period is QuotaPeriod.MONTH else tenant.period_s


def retry_after(now: float) -> int:
    """Whole seconds until the current rate window ends (at least 1)."""
    return max(1, math.ceil(minute_of(now) + RATE_WINDOW_S - now))


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise ValidationError(f"{name} must be between 0 and 1e15", field=name)
