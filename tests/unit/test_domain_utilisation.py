"""Bucketed busy cards (domain/utilisation.py): the area under the series is the clipped
card-seconds of the spans, and cards on one node never add up past its capacity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.utilisation import (
    MAX_POINTS,
    BusySpan,
    Grid,
    GroupCapacity,
    UtilWindow,
    busy_now,
    busy_series,
    grid_for,
)

NOW = 1_000_000.0


def span(start: float, end: float | None, cards: int = 1, region: str = "r1") -> BusySpan:
    return BusySpan(start, end, cards, region, "ascend-910b", False, False)


times = st.floats(NOW - 5000, NOW + 500, allow_nan=False)
spans = st.lists(
    st.builds(
        lambda a, length, cards, running: span(a, None if running else a + length, cards),
        times,
        st.floats(0, 4000, allow_nan=False),
        st.integers(0, 16),
        st.booleans(),
    ),
    max_size=30,
)


@given(spans, st.sampled_from(list(UtilWindow)))
def test_bucketed_area_equals_the_clipped_interval_area(
    given_spans: list[BusySpan], window: UtilWindow
) -> None:
    grid = Grid(NOW - 3600, window.step_s / 24, 48)
    series = busy_series(given_spans, grid, NOW, lambda s: s.region)
    area = sum(sum(v) for v in series.values()) * grid.step_s
    expected = 0.0
    for s in given_spans:
        start, end = s.clipped(grid.start, grid.end, NOW)
        expected += s.cards * max(0.0, end - start)
    assert area == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(
    st.lists(st.tuples(st.floats(1, 900, allow_nan=False), st.integers(1, 8)), max_size=20),
    st.floats(0, 50, allow_nan=False),
)
def test_busy_never_exceeds_capacity_on_one_node(
    pieces: list[tuple[float, int]], gap: float
) -> None:
    capacity = 8
    at, laid = NOW - 7200, []
    for length, cards in pieces:  # back to back (or with gaps): never two at once
        laid.append(span(at, at + length, cards))
        at += length + gap
    grid = grid_for(UtilWindow.HOUR, NOW)
    for values in busy_series(laid, grid, NOW, lambda s: s.region).values():
        assert max(values) <= capacity + 1e-9
        assert min(values) >= 0


def test_a_running_span_counts_up_to_now_and_an_old_one_not_at_all() -> None:
    grid = Grid(NOW - 600, 60, 10)
    series = busy_series(
        [span(NOW - 90, None, 4), span(NOW - 5000, NOW - 4000, 8)], grid, NOW, lambda s: "all"
    )
    assert series == {"all": [0.0] * 8 + [2.0, 4.0]}
    assert busy_now([span(NOW - 90, None, 4), span(NOW - 9, NOW, 2)], NOW, lambda s: 1) == {1: 4}


def test_grids_of_the_three_windows() -> None:
    for window, points in ((UtilWindow.HOUR, 60), (UtilWindow.DAY, 144), (UtilWindow.WEEK, 168)):
        grid = grid_for(window, NOW)
        assert grid.steps == points <= MAX_POINTS
        assert grid.end == pytest.approx(NOW)
        assert len(grid.times) == points
    with pytest.raises(ValueError, match="steps"):
        Grid(0, 1, MAX_POINTS + 1)


@pytest.mark.parametrize(
    ("cards", "simulated", "marking"), [(8, 0, "real"), (8, 8, "simulated"), (8, 2, "mixed")]
)
def test_capacity_marking(cards: int, simulated: int, marking: str) -> None:
    assert GroupCapacity("r1", cards, simulated).marking == marking
