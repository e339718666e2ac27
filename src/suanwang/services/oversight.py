"""The operator's views of the platform: utilisation over time (by region or chip, and the
training/inference split), queued work grouped by tenant, chip and reason, WAN links with
the transfers over them, and revenue by tenant and model.

The console pages and the API routes (``/api/v1/fleet/utilisation``, ``/api/v1/queues``,
``/api/v1/wan``, ``/api/v1/revenue``) both call these methods, so they show the same
numbers. Every method is for the operator only (:class:`Forbidden` otherwise). The
aggregation is SQL (``ReportStore``) plus the pure bucketing of ``domain/utilisation.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from suanwang.domain.billing import Period
from suanwang.domain.errors import Forbidden
from suanwang.domain.oversight import (
    LinkView,
    QueueGroup,
    Revenue,
    TransferListing,
    link_views,
    revenue_of,
)
from suanwang.domain.tenancy import Principal
from suanwang.domain.transfers import TransferState
from suanwang.domain.utilisation import (
    BusySpan,
    Grid,
    GroupCapacity,
    UtilBy,
    UtilWindow,
    busy_now,
    busy_series,
    grid_for,
)
from suanwang.ports import Clock, UnitOfWorkFactory
from suanwang.services.billing import Billing

DIGITS = 3
"""Busy cards are averages: rounded to this many places, the same on the page and the API."""


@dataclass(frozen=True, slots=True)
class Series:
    """Average busy cards per bucket of one region or chip, real or simulated part."""

    group: str
    simulated: bool
    busy: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class CurrentRow:
    """A region or chip now: its cards, simulated cards and cards held."""

    capacity: GroupCapacity
    busy_cards: int


@dataclass(frozen=True, slots=True)
class Utilisation:
    window: UtilWindow
    by: UtilBy
    grid: Grid
    series: tuple[Series, ...]
    training: tuple[float, ...]
    """Busy cards held by ordinary jobs, per bucket."""
    inference: tuple[float, ...]
    """Busy cards held by model-serving replicas, per bucket."""
    current: tuple[CurrentRow, ...]
    training_now: int
    inference_now: int


@dataclass(frozen=True, slots=True)
class Queues:
    groups: tuple[QueueGroup, ...]
    """By tenant and chip."""
    reasons: tuple[QueueGroup, ...]
    """By tenant, chip and reason (one page)."""


@dataclass(frozen=True, slots=True)
class Wan:
    links: tuple[LinkView, ...]
    transfers: tuple[TransferListing, ...]
    """One page, newest first (``limit + 1`` fetched: the caller pages)."""


def _rounded(values: list[float]) -> tuple[float, ...]:
    return tuple(round(v, DIGITS) for v in values)


class Oversight:
    """Read-only operator views over one store and clock."""

    def __init__(self, uows: UnitOfWorkFactory, clock: Clock, billing: Billing) -> None:
        self._uows = uows
        self._clock = clock
        self._billing = billing

    def utilisation(self, principal: Principal, window: UtilWindow, by: UtilBy) -> Utilisation:
        """Cards busy over ``window`` by region or chip, the training/inference split, and
        each group's cards now."""
        _operator(principal)
        now = self._clock.now()
        grid = grid_for(window, now)
        with self._uows() as uow:
            spans = uow.reports.busy_spans(grid.start, now)
            capacity = uow.reports.capacity(by)
        group = _grouping(by)
        series = busy_series(spans, grid, now, lambda s: (group(s), s.simulated))
        split = busy_series(spans, grid, now, lambda s: s.serving)
        held = busy_now(spans, now, group)
        roles = busy_now(spans, now, lambda s: s.serving)
        zeros = [0.0] * grid.steps
        return Utilisation(
            window,
            by,
            grid,
            tuple(Series(g, sim, _rounded(v)) for (g, sim), v in sorted(series.items())),
            _rounded(split.get(False, zeros)),
            _rounded(split.get(True, zeros)),
            tuple(CurrentRow(c, held.get(c.group, 0)) for c in capacity),
            roles.get(False, 0),
            roles.get(True, 0),
        )

    def queues(self, principal: Principal, limit: int, offset: int = 0) -> Queues:
        """Queued work by tenant and chip (all groups), and by reason too (a page of
        ``limit`` groups from ``offset``)."""
        _operator(principal)
        with self._uows() as uow:
            groups = uow.reports.queue_groups(False, 10_000, 0)
            reasons = uow.reports.queue_groups(True, limit, offset)
        return Queues(tuple(groups), tuple(reasons))

    def wan(
        self, principal: Principal, state: TransferState | None, limit: int, offset: int = 0
    ) -> Wan:
        """The WAN links (real where both regions have an agent) and a page of transfers."""
        _operator(principal)
        with self._uows() as uow:
            links = uow.fleet.wan_links()
            agents = [a.region for a in uow.datasets.agents()]
            transfers = uow.reports.transfers(state, limit, offset)
        return Wan(tuple(link_views(links, agents)), tuple(transfers))

    def revenue(self, principal: Principal, period: Period) -> Revenue:
        """``period``'s bills (the billing service's own) by tenant and by model."""
        _operator(principal)
        return revenue_of(period, self._billing.bills(principal, period))

    def now(self) -> float:
        return self._clock.now()


def _grouping(by: UtilBy) -> Callable[[BusySpan], str]:
    if by is UtilBy.REGION:
        return lambda span: span.region
    return lambda span: span.chip


def _operator(principal: Principal) -> None:
    if not principal.is_operator:
        raise Forbidden("only the operator sees the platform's operations views")
