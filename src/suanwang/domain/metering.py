"""Compute metering: cut the card-time of job attempts into stable ledger intervals. Pure.

Time is cut on a fixed grid of ``interval_s`` (an hour by default) aligned to the UNIX
epoch, on whole milliseconds. An attempt that started at ``s`` and ended at ``e`` is
metered as the pieces ``[s, b1) [b1, b2) … [bk, e)`` where the ``b`` are grid boundaries.
A running attempt is metered only up to the last boundary already passed, so each piece
is final when it is written: its entry id ``compute:<attempt id>:<piece start ms>`` names
the same piece whenever (and however often) metering runs, and the ledger's
``ON CONFLICT DO NOTHING`` makes a restart re-meter nothing twice. Pieces never straddle a
grid boundary, so with an hourly grid they never straddle a day or a month either: a bill
period holds whole pieces.

The only approximation: an attempt that ends in the milliseconds between the control
loop's poll and the metering step, just after a boundary, is metered up to that boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.domain.usage import ComputeUsage

DEFAULT_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    """What metering needs to know about one started job attempt."""

    attempt_id: int
    job: str
    number: int
    tenant: str
    chip: str
    cards: int
    started_at: float
    ended_at: float | None
    metered_to: float | None
    """Ledger rows exist up to here (``None``: nothing metered yet)."""
    replica: str | None = None
    """The deployment replica this attempt runs, if any."""

    @property
    def source(self) -> str:
        if self.replica:
            return f"replica:{self.replica}"
        return f"job:{self.job}#{self.number}"


@dataclass(frozen=True, slots=True)
class Metered:
    """The pieces of one attempt to append now, and the attempt's new watermark."""

    pieces: tuple[ComputeUsage, ...]
    metered_to: float | None


def _ms(t: float) -> int:
    return round(t * 1000)


def last_boundary(now: float, interval_s: float = DEFAULT_INTERVAL_S) -> float:
    """The newest grid boundary at or before ``now``."""
    step = _ms(interval_s)
    return (_ms(now) // step) * step / 1000


def meter(span: AttemptSpan, now: float, interval_s: float = DEFAULT_INTERVAL_S) -> Metered:
    """The closed, not yet metered pieces of ``span`` at ``now``."""
    step = _ms(interval_s)
    if step <= 0:
        raise ValueError("interval_s must be at least a millisecond")
    start = _ms(span.metered_to) if span.metered_to is not None else _ms(span.started_at)
    if span.ended_at is not None:
        limit = _ms(span.ended_at)
        final = span.ended_at
    else:
        limit = (_ms(now) // step) * step
        final = limit / 1000
    pieces: list[ComputeUsage] = []
    cursor = start
    while cursor < limit:
        end = min((cursor // step + 1) * step, limit)
        pieces.append(
            ComputeUsage(
                entry_id=f"compute:{span.attempt_id}:{cursor}",
                tenant=span.tenant,
                source=span.source,
                chip=span.chip,
                cards=span.cards,
                started_at=cursor / 1000,
                ended_at=end / 1000,
            )
        )
        cursor = end
    if not pieces and span.ended_at is None:
        return Metered((), span.metered_to)
    return Metered(tuple(pieces), max(final, span.metered_to or final))
