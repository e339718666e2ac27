"""What the operator's views show besides utilisation: queues, WAN transfers, revenue.

- :class:`QueueGroup`: pending jobs of one tenant and chip selector (and, in the detailed
  form, one scheduler reason): how many, cards asked, the oldest submission.
- :class:`TransferListing`: a transfer with its dataset's tenant and name, and an ETA.
- :class:`LinkView`: a WAN link and whether transfers over it really run (an agent at
  both ends) or the link is only a model of the network.
- :func:`revenue_of`: bills rolled up by tenant and by item (model, chip, storage); the
  totals are the bills' own totals, so they always add up.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suanwang.domain.billing import Bill, Meter, Period
from suanwang.domain.fleet import WanLinkSpec
from suanwang.domain.transfers import TransferRecord, TransferState
from suanwang.domain.usage import UsageKind

TOKEN_METERS = frozenset({Meter.PROMPT_TOKENS, Meter.COMPLETION_TOKENS})


@dataclass(frozen=True, slots=True)
class QueueGroup:
    """Pending jobs sharing a tenant, a chip selector and (when grouped so) a reason."""

    tenant: str
    chip: str
    reason: str | None
    """``None`` in the tenant-and-chip summary, the scheduler's text in the detail."""
    jobs: int
    cards: int
    oldest_at: float

    def wait_s(self, now: float) -> float:
        """How long the oldest of them has waited since it was submitted."""
        return max(0.0, now - self.oldest_at)


@dataclass(frozen=True, slots=True)
class TransferListing:
    """A transfer as the WAN page lists it."""

    transfer: TransferRecord
    tenant: str
    dataset_name: str

    @property
    def eta_s(self) -> float | None:
        """The agent's estimate from its recent rate; else remaining bytes over that rate;
        ``None`` when it is not moving (or already ended)."""
        t = self.transfer
        if not t.state.active:
            return None
        if t.eta_s is not None:
            return t.eta_s
        if t.rate_bytes_per_s > 0:
            return max(0, t.bytes_total - t.bytes_done) / t.rate_bytes_per_s
        return None


@dataclass(frozen=True, slots=True)
class LinkView:
    """A WAN link; ``real`` when both of its regions have a transfer agent."""

    link: WanLinkSpec
    real: bool


def link_views(links: Iterable[WanLinkSpec], agent_regions: Iterable[str]) -> list[LinkView]:
    """The links, each marked real or simulated, in region-pair order."""
    regions = set(agent_regions)
    return [
        LinkView(link, link.region_a in regions and link.region_b in regions)
        for link in sorted(links, key=lambda x: (x.region_a, x.region_b))
    ]


def active_states() -> tuple[TransferState, ...]:
    return tuple(s for s in TransferState if s.active)


@dataclass(frozen=True, slots=True)
class RevenueRow:
    """Amount (micro-units), tokens and card-milliseconds of one tenant or one item."""

    name: str
    kind: str
    amount: int = 0
    tokens: int = 0
    card_ms: int = 0

    @property
    def card_hours(self) -> float:
        return self.card_ms / 3_600_000

    def plus(self, amount: int, tokens: int, card_ms: int) -> RevenueRow:
        return RevenueRow(
            self.name,
            self.kind,
            self.amount + amount,
            self.tokens + tokens,
            self.card_ms + card_ms,
        )


@dataclass(frozen=True, slots=True)
class Revenue:
    """A period's bills by tenant and by item, with their total."""

    period: Period
    tenants: tuple[RevenueRow, ...]
    items: tuple[RevenueRow, ...]

    @property
    def total(self) -> RevenueRow:
        out = RevenueRow("total", "")
        for row in self.tenants:
            out = out.plus(row.amount, row.tokens, row.card_ms)
        return out


def revenue_of(period: Period, bills: Iterable[Bill]) -> Revenue:
    """Roll ``bills`` up by tenant (largest amount first) and by item (model for tokens,
    chip for compute, ``storage``); each tenant's amount is its bill's total."""
    tenants: dict[str, RevenueRow] = {}
    items: dict[tuple[str, str], RevenueRow] = {}
    for bill in bills:
        row = tenants.get(bill.tenant, RevenueRow(bill.tenant, "tenant"))
        for line in bill.lines:
            tokens = line.quantity if line.meter in TOKEN_METERS else 0
            card_ms = line.quantity if line.meter is Meter.CARD_MS else 0
            name = "storage" if line.kind is UsageKind.STORAGE else line.item
            key = (line.kind.value, name)
            item = items.get(key, RevenueRow(name, line.kind.value))
            items[key] = item.plus(line.amount, tokens, card_ms)
            row = row.plus(line.amount, tokens, card_ms)
        tenants[bill.tenant] = row
    return Revenue(
        period,
        tuple(sorted(tenants.values(), key=lambda r: (-r.amount, r.name))),
        tuple(sorted(items.values(), key=lambda r: (-r.amount, r.kind, r.name))),
    )
