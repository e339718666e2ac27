"""Chip speeds learned from finished runs: table tests and properties of the pure learner."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.domain.ids import ChipName
from suanwang.scheduler.learning import (
    MAX_SPEED,
    RunObservation,
    SpeedBook,
    learn_book,
    learn_speeds,
    merged_speeds,
)

H20, B910 = ChipName("nvidia-h20"), ChipName("ascend-910b")


def run(
    chip: ChipName,
    reference: float,
    actual: float,
    at: float = 0.0,
    kind: str = "k",
    tenant: str = "a",
) -> RunObservation:
    return RunObservation(tenant, kind, chip, reference, actual, at)


CASES = [
    pytest.param([run(H20, 100, 25)] * 3, {"k": {H20: 4.0}}, id="speed-is-estimate-over-run-time"),
    pytest.param([run(H20, 100, 25)] * 2, {}, id="fewer-than-three-runs-teach-nothing"),
    pytest.param(
        [run(H20, 100, 25), run(H20, 100, 50), run(H20, 100, 1000)],
        {"k": {H20: 2.0}},
        id="median-ignores-one-odd-run",
    ),
    pytest.param(
        [run(H20, 100, 0.0001)] * 3, {"k": {H20: MAX_SPEED}}, id="instant-exit-is-clamped"
    ),
    pytest.param(
        [run(H20, 0, 25), run(H20, 100, 0), run(H20, -1, 5), run(H20, 100, 25)],
        {},
        id="runs-without-estimate-or-time-are-skipped",
    ),
    pytest.param(
        [run(H20, 100, 25, kind="a")] * 3 + [run(B910, 100, 50, kind="b")] * 3,
        {"a": {H20: 4.0}, "b": {B910: 2.0}},
        id="kinds-and-chips-are-learned-apart",
    ),
    pytest.param([run(H20, 100, 25, kind="")] * 3, {}, id="runs-without-a-kind-are-skipped"),
]


@pytest.mark.parametrize(("runs", "expected"), CASES)
def test_learn_speeds(runs: list[RunObservation], expected: dict[str, dict[str, float]]) -> None:
    assert learn_speeds(runs) == expected


def test_only_the_latest_window_counts() -> None:
    old = [run(H20, 100, 100, at=float(i)) for i in range(10)]  # speed 1.0, long ago
    new = [run(H20, 100, 25, at=100.0 + i) for i in range(5)]  # speed 4.0, lately
    assert learn_speeds(old + new, window=5) == {"k": {H20: 4.0}}
    assert learn_speeds(old + new, window=15)["k"][H20] == 1.0  # the median of 15: old wins


def own(speeds: dict[ChipName, float], tenant: str = "a", kind: str = "k") -> SpeedBook:
    return SpeedBook(own={(tenant, kind): speeds})


def shared(speeds: dict[ChipName, float], kind: str = "k") -> SpeedBook:
    return SpeedBook(shared={kind: speeds})


MERGES = [
    # (the job's kind, its stated speeds, what was learned, its speeds); the job is a's
    pytest.param("k", {}, own({H20: 4.0}), {H20: 4.0}, id="learned-fills-in"),
    pytest.param("k", {H20: 1.5}, own({H20: 4.0}), {H20: 1.5}, id="stated-wins"),
    pytest.param("k", {B910: 2.0}, own({H20: 4.0}), {H20: 4.0, B910: 2.0}, id="union-of-chips"),
    pytest.param(None, {}, own({H20: 4.0}), {}, id="no-kind-learns-nothing"),
    pytest.param("other", {}, own({H20: 4.0}), {}, id="another-kind-learns-nothing"),
    pytest.param("k", {}, own({H20: 4.0}, "b"), {}, id="another-tenants-runs-teach-nothing"),
    pytest.param("k", {}, shared({H20: 4.0}), {H20: 4.0}, id="the-operators-runs-are-a-fallback"),
    pytest.param(
        "k",
        {},
        SpeedBook(own={("a", "k"): {H20: 1.5}}, shared={"k": {H20: 4.0, B910: 2.0}}),
        {H20: 1.5, B910: 2.0},
        id="own-runs-win-over-the-operators-chip-by-chip",
    ),
    pytest.param(
        "k",
        {H20: 9.0},
        SpeedBook(own={("a", "k"): {H20: 1.5}}, shared={"k": {H20: 4.0}}),
        {H20: 9.0},
        id="stated-wins-over-both",
    ),
]


@pytest.mark.parametrize(("kind", "stated", "learned", "expected"), MERGES)
def test_merged_speeds(
    kind: str | None,
    stated: dict[ChipName, float],
    learned: SpeedBook,
    expected: dict[ChipName, float],
) -> None:
    assert merged_speeds("a", kind, stated, learned) == expected


def test_each_tenant_learns_from_its_own_runs_and_everyone_from_the_operators() -> None:
    runs = (
        [run(H20, 100, 25, tenant="a")] * 3  # a: 4.0 on the H20
        + [run(H20, 100, 200, tenant="b")] * 10  # b: 0.5, slow on purpose
        + [run(B910, 100, 50, tenant="ops")] * 3  # the operator's benchmark: 2.0
    )
    book = learn_book(runs, operator="ops")
    assert book.own == {("a", "k"): {H20: 4.0}, ("b", "k"): {H20: 0.5}, ("ops", "k"): {B910: 2.0}}
    assert book.shared == {"k": {B910: 2.0}}
    assert book.speeds("a", "k") == {H20: 4.0, B910: 2.0}
    assert book.speeds("c", "k") == {B910: 2.0}
    assert learn_book(runs, operator=None).shared == {}


observations = st.lists(
    st.builds(
        RunObservation,
        tenant=st.sampled_from(["t1", "t2", "ops"]),
        kind=st.sampled_from(["a", "b"]),
        chip=st.sampled_from([H20, B910]),
        reference_s=st.floats(1, 1e6),
        actual_s=st.floats(1, 1e6),
        ended_at=st.floats(0, 1e6),
    ),
    max_size=60,
)


@given(observations)
def test_a_learned_speed_lies_within_what_was_observed(runs: list[RunObservation]) -> None:
    for kind, chips in learn_speeds(runs, window=1000).items():
        for chip, speed in chips.items():
            seen = [r.speed for r in runs if r.kind == kind and r.chip == chip]
            assert len(seen) >= 3
            assert min(seen) <= speed <= max(seen)
            assert speed == statistics.median(seen)


@given(observations)
def test_learning_ignores_the_order_runs_arrive_in(runs: list[RunObservation]) -> None:
    by_time = sorted(runs, key=lambda r: (r.ended_at, r.kind, r.chip, r.reference_s, r.actual_s))
    assert learn_speeds(list(reversed(by_time)), window=1000) == learn_speeds(by_time, window=1000)


@given(observations)
def test_a_tenant_learns_exactly_what_its_own_runs_teach(runs: list[RunObservation]) -> None:
    book = learn_book(runs, operator="ops", window=1000)
    for tenant in ("t1", "t2", "ops"):
        theirs = learn_speeds([r for r in runs if r.tenant == tenant], window=1000)
        assert {k: s for (t, k), s in book.own.items() if t == tenant} == theirs
    assert book.shared == learn_speeds([r for r in runs if r.tenant == "ops"], window=1000)
