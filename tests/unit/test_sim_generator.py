"""The Gavel-style workload generator: deterministic per seed, and the distributions it
states (scale factors 70/10/15/5 %, Gavel's two-part duration mix, uniform job types
with multi-GPU sizes only for types that have them, Poisson arrivals, batch mode)."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from statistics import fmean

import pytest

from suanwang.simulator.errors import SimulationError
from suanwang.simulator.generator import SCALE_MIX, WorkloadSpec, generate
from suanwang.simulator.importers import Throughput, ThroughputMatrix
from suanwang.simulator.trace import TraceJob

MATRIX: ThroughputMatrix = {
    **{("ResNet", g): Throughput(10.0 * g, 6.0 * g, 2.0 * g) for g in (1, 2, 4, 8)},
    **{("LM", g): Throughput(5.0 * g, 4.0 * g, 0.0) for g in (1, 2, 4, 8)},
    ("A3C", 1): Throughput(7.0, 5.6, 3.5),
    ("CycleGAN", 1): Throughput(4.0, 2.4, 0.5),
}
"""Four job types; ``ResNet`` and ``LM`` come in every size, ``LM`` does not run on a
K80 (zero throughput)."""
N = 20_000
MINUTE = 60.0


@pytest.fixture(scope="module")
def many() -> list[TraceJob]:
    return generate(MATRIX, WorkloadSpec(jobs=N, seed=7, mean_gap_s=300.0))


def gpus(job: TraceJob) -> int:
    return int(job.cards * job.nodes)


def test_the_same_seed_gives_the_same_jobs_and_another_seed_others() -> None:
    spec = WorkloadSpec(jobs=200, seed=3)
    assert generate(MATRIX, spec) == generate(MATRIX, spec)
    other = generate(MATRIX, WorkloadSpec(jobs=200, seed=4))
    assert [j.duration_s for j in other] != [j.duration_s for j in generate(MATRIX, spec)]
    longer = generate(MATRIX, WorkloadSpec(jobs=300, seed=3))
    assert longer[:200] == generate(MATRIX, spec)


def test_scale_factors_follow_the_papers_mix(many: list[TraceJob]) -> None:
    counts = Counter(gpus(j) for j in many)
    for size, share in SCALE_MIX:
        assert counts[size] / N == pytest.approx(share, abs=0.015), (size, counts)
    eight = next(j for j in many if gpus(j) == 8)
    assert (eight.cards, eight.nodes) == (4, 2)


def test_durations_follow_gavels_two_part_mix(many: list[TraceJob]) -> None:
    exponents = [math.log10(j.duration_s / MINUTE) for j in many]
    assert min(exponents) >= 1.5
    assert max(exponents) <= 4.0
    long = [e for e in exponents if e > 3.0]
    short = [e for e in exponents if e <= 3.0]
    assert len(long) / N == pytest.approx(0.2, abs=0.015)
    assert fmean(short) == pytest.approx(2.25, abs=0.03)  # U(1.5, 3)
    assert fmean(long) == pytest.approx(3.5, abs=0.03)  # U(3, 4)


def test_job_types_are_uniform_and_multi_gpu_only_where_the_matrix_has_it(
    many: list[TraceJob],
) -> None:
    single = Counter(j.kind for j in many if gpus(j) == 1)
    total = sum(single.values())
    for kind in ("ResNet", "LM", "A3C", "CycleGAN"):
        assert single[kind] / total == pytest.approx(0.25, abs=0.02), single
    assert {j.kind for j in many if gpus(j) > 1} == {"ResNet", "LM"}


def test_speeds_and_accepted_chips_come_from_the_matrix(many: list[TraceJob]) -> None:
    lm = next(j for j in many if j.kind == "LM")
    assert lm.chips == ("nvidia-v100", "nvidia-p100")
    assert lm.speed == {"nvidia-v100": 1.0, "nvidia-p100": 0.8}
    resnet = next(j for j in many if j.kind == "ResNet")
    assert resnet.chips == ("any",)
    assert resnet.speed == {"nvidia-v100": 1.0, "nvidia-p100": 0.6, "nvidia-k80": 0.2}


def test_arrivals_are_poisson_with_the_mean_gap(many: list[TraceJob]) -> None:
    submits = [j.submit_s for j in many]
    assert submits[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(submits)]
    assert min(gaps) >= 0
    assert fmean(gaps) == pytest.approx(300.0, rel=0.03)
    assert sum(g < 300.0 for g in gaps) / len(gaps) == pytest.approx(1 - math.exp(-1), abs=0.015)


def test_batch_mode_and_single_gpu() -> None:
    batch = generate(MATRIX, WorkloadSpec(jobs=100, seed=1, mean_gap_s=None, multi_gpu=False))
    assert {j.submit_s for j in batch} == {0.0}
    assert {gpus(j) for j in batch} == {1}


@pytest.mark.parametrize(
    ("matrix", "spec", "field"),
    [
        (MATRIX, WorkloadSpec(jobs=0), "--jobs"),
        (MATRIX, WorkloadSpec(jobs=5, mean_gap_s=-1.0), "--mean-gap-s"),
        ({("A3C", 1): Throughput(7.0, 5.6, 3.5)}, WorkloadSpec(jobs=5), "--matrix"),
    ],
)
def test_bad_specs_are_refused(matrix: ThroughputMatrix, spec: WorkloadSpec, field: str) -> None:
    with pytest.raises(SimulationError) as raised:
        generate(matrix, spec)
    assert raised.value.field == field
