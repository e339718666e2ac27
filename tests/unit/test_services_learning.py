"""Learned chip speeds in the control plane, with a fake job store: whose runs teach whom.

One H20 (148 TFLOPS: speed 1.18 by the catalogue) and one Ascend 910B (280: 2.24). Tenant
``b`` has ten runs of kind ``resnet`` that claim the H20 is twenty times faster (an
estimate of 100 s, done in 5 s). Tenant ``a``'s ``resnet`` job must go where the catalogue
(or ``a``'s own history, or the operator's benchmarks) says, not where ``b``'s runs point.
"""

from __future__ import annotations

from collections.abc import Collection

import pytest
from builders import make_node, make_snapshot

from suanwang.domain.ids import ChipName, new_job_id
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.records import JobRecord
from suanwang.scheduler import Admit, cycle
from suanwang.scheduler.learning import RunObservation
from suanwang.services.learning import LearnedSpeeds
from suanwang.services.snapshots import pending_job

H20, B910 = ChipName("nvidia-h20"), ChipName("ascend-910b")
CATALOGUE = {H20: 148 / 125, B910: 280 / 125}
OPERATOR = "ops"


class FakeJobStore:
    """Finished runs, answered per (tenant, kind) as the database does."""

    def __init__(self, runs: list[RunObservation]) -> None:
        self.runs = runs
        self.asked: list[set[tuple[str, str]]] = []

    def finished_runs(
        self, pairs: Collection[tuple[str, str]], per_pair: int
    ) -> list[RunObservation]:
        self.asked.append(set(pairs))
        return [r for r in self.runs if (r.tenant, r.kind) in pairs][:per_pair]


class FakeUnitOfWork:
    def __init__(self, runs: list[RunObservation]) -> None:
        self.jobs = FakeJobStore(runs)


class FixedClock:
    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> float:
        return self.at


def runs_of(tenant: str, chip: ChipName, run_s: float, count: int) -> list[RunObservation]:
    """``count`` runs of kind resnet estimated at 100 s that took ``run_s`` on ``chip``."""
    return [RunObservation(tenant, "resnet", chip, 100.0, run_s, 1_000.0 + i) for i in range(count)]


def job_of(tenant: str) -> JobRecord:
    spec = JobSpec(
        name="train",
        command=("true",),
        resources=Resources(chip="any"),
        kind="resnet",
        expected_duration_s=100.0,
    )
    return JobRecord(
        id=new_job_id(), tenant=tenant, name="train", state=JobState.QUEUED, reason="",
        priority=0, spec=spec, idempotency_key=None, request_hash="h",
        attempts=0, cancel_requested=False, created_at=0.0, updated_at=0.0, version=1,
    )  # fmt: skip


def chip_for(job: JobRecord, runs: list[RunObservation]) -> str:
    """Where the default policy starts ``job`` on an idle H20 + 910B fleet."""
    learned = LearnedSpeeds(FixedClock(), operator=OPERATOR)  # type: ignore[arg-type]
    book = learned.book(FakeUnitOfWork(runs), {(job.tenant, "resnet")})  # type: ignore[arg-type]
    nodes = [make_node(1, chip="nvidia-h20", cards_total=1), make_node(2, cards_total=1)]
    snapshot = make_snapshot(nodes, [pending_job(job, book)], chip_speed=CATALOGUE)
    [admit] = cycle(snapshot)
    assert isinstance(admit, Admit)
    return str(admit.chip)


MISLEADING = runs_of("b", H20, 5.0, 10)  # b says: the H20 runs resnet at speed 20

CASES = [
    pytest.param([], "ascend-910b", id="no-history-the-catalogue-decides"),
    pytest.param(MISLEADING, "ascend-910b", id="another-tenants-runs-change-nothing"),
    pytest.param(runs_of("a", H20, 5.0, 3), "nvidia-h20", id="own-runs-teach"),
    pytest.param(runs_of(OPERATOR, H20, 5.0, 3), "nvidia-h20", id="the-operators-runs-teach"),
    pytest.param(
        MISLEADING + runs_of(OPERATOR, H20, 5.0, 3) + runs_of("a", H20, 100.0, 3),
        "ascend-910b",
        id="own-runs-win-over-the-operators",
    ),
]


@pytest.mark.parametrize(("runs", "expected"), CASES)
def test_a_tenants_placement_follows_only_trusted_history(
    runs: list[RunObservation], expected: str
) -> None:
    assert chip_for(job_of("a"), runs) == expected


def test_the_misleading_tenant_only_misleads_itself() -> None:
    assert chip_for(job_of("b"), MISLEADING) == "nvidia-h20"


def test_history_is_read_per_pair_and_kept_for_a_minute() -> None:
    clock = FixedClock()
    learned = LearnedSpeeds(clock, operator=OPERATOR)  # type: ignore[arg-type]
    uow = FakeUnitOfWork(MISLEADING)
    wanted = {("a", "resnet"), ("b", "resnet"), ("b", "")}
    book = learned.book(uow, wanted)  # type: ignore[arg-type]
    assert uow.jobs.asked == [{("a", "resnet"), ("b", "resnet"), (OPERATOR, "resnet")}]
    assert book.speeds("a", "resnet") == {}
    assert book.speeds("b", "resnet") == {H20: 20.0}
    clock.at = 59.0
    learned.book(uow, wanted)  # type: ignore[arg-type]
    assert len(uow.jobs.asked) == 1
    clock.at = 60.0
    learned.book(uow, {("a", "resnet")})  # type: ignore[arg-type]
    assert uow.jobs.asked[1] == {("a", "resnet"), (OPERATOR, "resnet")}
