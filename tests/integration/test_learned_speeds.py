"""The live control plane learns chip speeds per tenant and job kind from finished runs.

A real (local) cluster has one node of nvidia-h20 (148 TFLOPS) and one of ascend-910b
(280 TFLOPS): by the catalogue, the 910B is the faster chip. History says that jobs of
kind ``sparse-embed`` ran almost twice as fast on the H20. A queued job of that kind that
accepts any chip goes to the H20; a job of another kind, or one that states its own
speeds, does not. Another tenant's history of the kind changes nothing; the operator's
(the platform tenant ``maas-public``) teaches everyone. Real database (both), real
scheduler, real local processes.
"""

from __future__ import annotations

import pytest

from suanwang.domain.deployments import PUBLIC_TENANT
from suanwang.domain.ids import new_job_id
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, Resources
from suanwang.domain.records import AttemptChange, AttemptRecord, JobRecord
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

FLEET = """
regions: [{name: r1}]
clusters:
  - name: here
    region: r1
    kind: real
    nodes:
      - {name: slow-by-spec, chip: nvidia-h20, cards: 1}
      - {name: fast-by-spec, chip: ascend-910b, cards: 1}
"""
KIND = "sparse-embed"


def tenant_principal(platform: Platform, tenant: str = "acme") -> Principal:
    op = Principal("op", Scope.OPERATOR, None)
    platform.tenancy.create_tenant(tenant, tenant.title(), {})
    key = platform.tenancy.create_key(
        op, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def record_history(platform: Platform, tenant: str, chip: str, run_s: float, count: int) -> None:
    """``count`` succeeded runs of KIND on ``chip``, each estimated at 100 s, lasting ``run_s``."""
    spec = JobSpec(name="history", command=("true",), kind=KIND, expected_duration_s=100.0)
    with platform.uows() as uow:
        for i in range(count):
            job = JobRecord(
                id=new_job_id(), tenant=tenant, name="history", state=JobState.SUCCEEDED,
                reason="", priority=0, spec=spec, idempotency_key=None, request_hash="h",
                attempts=1, cancel_requested=False, created_at=0.0, updated_at=0.0, version=1,
            )  # fmt: skip
            uow.jobs.add_job(job)
            record = AttemptRecord(
                id=0, job=job.id, number=1, state=AttemptState.SUCCEEDED, cluster="here",
                backend="local", chip=chip, family="x", cards=1, placements=(), handle={},
                dispatched=True, exit_code=0, reason="", admitted_at=0.0, started_at=None,
                ended_at=None,
            )  # fmt: skip
            attempt = uow.jobs.add_attempt(record)
            ended = 1_000.0 + i
            uow.jobs.update_attempt(
                attempt, AttemptChange(started_at=ended - run_s, ended_at=ended)
            )
        uow.commit()


def chip_of(platform: Platform, who: Principal, job_id: str) -> str:
    attempts = platform.jobs.get(who, job_id).attempts
    assert attempts, "the job was not admitted"
    return attempts[0].chip


def submit(platform: Platform, who: Principal, **extra: object) -> str:
    spec = JobSpec(
        name="probe",
        command=("true",),
        resources=Resources(chip="any", cards_per_node=1),
        expected_duration_s=100.0,
        **extra,  # type: ignore[arg-type]
    )
    return platform.jobs.submit(who, spec, None).job.id


CASES = [
    # (runs on the H20 in history, the job's kind, the job's stated speeds, expected chip)
    pytest.param(3, KIND, (), "nvidia-h20", id="history-of-the-kind-wins-over-the-catalogue"),
    pytest.param(2, KIND, (), "ascend-910b", id="too-little-history-keeps-the-default"),
    pytest.param(3, "another-kind", (), "ascend-910b", id="history-of-another-kind-is-ignored"),
    pytest.param(
        3, KIND, (("ascend-910b", 9.0),), "ascend-910b", id="stated-speeds-win-over-history"
    ),
]


@pytest.mark.parametrize(("runs", "kind", "stated", "expected"), CASES)
def test_chip_choice_follows_learned_speeds(
    platform: Platform,
    runs: int,
    kind: str,
    stated: tuple[tuple[str, float], ...],
    expected: str,
) -> None:
    platform.fleet.apply_yaml(FLEET)
    who = tenant_principal(platform)
    tenant = str(who.tenant_id)
    record_history(platform, tenant, "nvidia-h20", run_s=25.0, count=runs)  # speed 4.0
    record_history(platform, tenant, "ascend-910b", run_s=44.0, count=3)  # 2.27, as the catalogue
    job = submit(platform, who, kind=kind, speed=stated)
    platform.control.tick()
    assert chip_of(platform, who, job) == expected


WHOSE = [
    # (whose runs on the H20 are in history, the chip acme's job goes to)
    pytest.param("acme", "nvidia-h20", id="acmes-own-history-teaches-acme"),
    pytest.param("rival", "ascend-910b", id="another-tenants-history-changes-nothing"),
    pytest.param(PUBLIC_TENANT, "nvidia-h20", id="the-operators-history-teaches-everyone"),
]


@pytest.mark.parametrize(("whose", "expected"), WHOSE)
def test_only_trusted_history_steers_a_tenants_placement(
    platform: Platform, whose: str, expected: str
) -> None:
    """Tenant ``rival`` (or the operator) ran ``sparse-embed`` ten times, each finished in
    5 s against an estimate of 100 s on the H20 (speed 20): only acme's own runs and the
    operator's may move acme's job off the 910B the catalogue prefers."""
    platform.fleet.apply_yaml(FLEET)
    acme = tenant_principal(platform)
    if whose != "acme":
        platform.tenancy.create_tenant(whose, whose, {})
    record_history(platform, whose, "nvidia-h20", run_s=5.0, count=10)
    job = submit(platform, acme, kind=KIND)
    platform.control.tick()
    assert chip_of(platform, acme, job) == expected
