"""Compute metering (pure): grid pieces, stable entry ids, exact card-time."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.domain.metering import AttemptSpan, last_boundary, meter
from suanwang.domain.usage import ComputeUsage

H = 3600.0
T0 = 1_800_000_000.0  # on the hour grid


def span(
    start: float, end: float | None, metered_to: float | None = None, cards: int = 4
) -> AttemptSpan:
    return AttemptSpan(7, "job-1", 1, "acme", "ascend-910b", cards, start, end, metered_to)


def card_ms(pieces: tuple[ComputeUsage, ...] | list[ComputeUsage]) -> int:
    return sum(p.cards * (round(p.ended_at * 1000) - round(p.started_at * 1000)) for p in pieces)


def test_an_ended_attempt_is_cut_on_the_grid() -> None:
    metered = meter(span(T0 + 1800, T0 + 2 * H + 60), now=T0 + 3 * H)
    assert [(p.started_at - T0, p.ended_at - T0) for p in metered.pieces] == [
        (1800, H),
        (H, 2 * H),
        (2 * H, 2 * H + 60),
    ]
    assert metered.metered_to == T0 + 2 * H + 60
    assert card_ms(metered.pieces) == 4 * (2 * H + 60 - 1800) * 1000


def test_a_running_attempt_is_metered_up_to_the_last_boundary_only() -> None:
    metered = meter(span(T0 + 1800, None), now=T0 + H + 10)
    assert [(p.started_at - T0, p.ended_at - T0) for p in metered.pieces] == [(1800, H)]
    assert metered.metered_to == T0 + H
    assert meter(span(T0 + 1800, None), now=T0 + 1900).pieces == ()


def test_replicas_are_tagged_as_such() -> None:
    replica = dataclasses.replace(span(T0, T0 + 5), replica="dep-1-0")
    assert meter(replica, T0 + 10).pieces[0].source == "replica:dep-1-0"
    assert meter(span(T0, T0 + 5), T0 + 10).pieces[0].source == "job:job-1#1"


def test_nothing_left_once_metered_to_the_end() -> None:
    assert meter(span(T0, T0 + 5, metered_to=T0 + 5), T0 + 10).pieces == ()
    # ended a hair before a boundary metered while it ran: nothing more, no negative piece
    assert meter(span(T0, T0 + H - 0.5, metered_to=T0 + H), T0 + H + 1).pieces == ()


def test_last_boundary() -> None:
    assert last_boundary(T0 + H + 5) == T0 + H
    assert last_boundary(T0 + 59, interval_s=60) == T0


def test_a_sub_millisecond_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="millisecond"):
        meter(span(T0, T0 + 1), T0 + 2, interval_s=0.0001)


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(min_value=0, max_value=4 * H),
    duration=st.floats(min_value=0, max_value=6 * H),
    checks=st.lists(st.floats(min_value=0, max_value=12 * H), max_size=6),
    interval=st.sampled_from([60.0, 900.0, H]),
    cards=st.integers(min_value=0, max_value=64),
)
def test_any_metering_schedule_writes_the_same_pieces_once(
    start: float, duration: float, checks: list[float], interval: float, cards: int
) -> None:
    """Metered at any moments (running and after the end), with duplicates dropped by
    entry id as the ledger does, the pieces are those of one metering after the end, and
    their card-time is exactly cards × duration on whole milliseconds."""
    begin, end = T0 + start, T0 + start + duration
    ledger: dict[str, ComputeUsage] = {}
    watermark: float | None = None
    for at in [*sorted(T0 + c for c in checks), end + 1]:
        running_at = at < end
        metered = meter(
            span(begin, None if running_at else end, watermark, cards), max(at, begin), interval
        )
        for piece in metered.pieces:
            assert piece.entry_id not in ledger or ledger[piece.entry_id] == piece
            ledger.setdefault(piece.entry_id, piece)
        watermark = metered.metered_to
    once = meter(span(begin, end, None, cards), end + 1, interval)
    assert sorted(ledger) == sorted(p.entry_id for p in once.pieces)
    assert card_ms(list(ledger.values())) == cards * (round(end * 1000) - round(begin * 1000))
    assert all(p.ended_at > p.started_at for p in ledger.values())
    for piece in ledger.values():
        lo = last_boundary(piece.started_at, interval)
        assert piece.ended_at <= lo + interval  # never straddles a grid boundary


class _Clock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> float:
        return self.t


def test_the_control_loop_step_runs_at_most_once_per_period() -> None:
    from suanwang.services.metering import ComputeMeter

    clock = _Clock()
    runs: list[float] = []

    class Counting(ComputeMeter):
        def run(self) -> int:
            runs.append(clock.t - T0)
            return 0

    meter_ = Counting(lambda: None, clock, min_period_s=2.0)  # type: ignore[arg-type]
    for step in (0.0, 0.5, 1.0, 2.0, 2.5, 4.0):
        clock.t = T0 + step
        meter_.tick()
    assert runs == [0.0, 2.0, 4.0]
