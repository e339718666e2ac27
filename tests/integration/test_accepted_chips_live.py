"""Live: jobs accepting several chip types are admitted by the control loop on any of
them and charged to the family they run on (Kueue's flavour fungibility). SQLite and
PostgreSQL.

Tenant ``acme`` may hold 4 Ascend and 4 MetaX cards. Nine one-card jobs, submitted at
once from 9 threads, each accept ``ascend-910b`` or ``metax-c500``: 8 run, 4 on each
family, and the ninth waits on quota. Were quota charged to the first accepted family
(or the list cut to one chip), only 4 would run.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from suanwang.domain.jobs import JobSpec, JobState, resources_accepting
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

FLEET = """
regions: [{name: r1}]
clusters:
  - name: sim
    region: r1
    kind: simulated
    nodes:
      - {name: a1, chip: ascend-910b, cards: 8}
      - {name: m1, chip: metax-c500, cards: 8}
"""
OPERATOR = Principal("op", Scope.OPERATOR, None)
SPEC = JobSpec(
    name="either",
    command=(),
    resources=resources_accepting(["ascend-910b", "metax-c500"], cards_per_node=1),
    simulate_duration_s=3600,
)


def test_multi_chip_jobs_are_charged_to_the_family_they_run_on(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {"ascend": 4, "metax": 4})
    key = platform.tenancy.create_key(
        OPERATOR, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    acme = platform.tenancy.authenticate(key.secret)
    with ThreadPoolExecutor(max_workers=9) as pool:
        ids = list(pool.map(lambda _: platform.jobs.submit(acme, SPEC, None).job.id, range(9)))

    report = platform.control.tick()

    assert len(report.admitted) == 8
    details = [platform.jobs.get(acme, job_id) for job_id in ids]
    running = [d for d in details if d.job.state is not JobState.QUEUED]
    assert Counter(d.attempts[-1].family for d in running) == {"ascend": 4, "metax": 4}
    assert {d.attempts[-1].chip for d in running} == {"ascend-910b", "metax-c500"}
    (waiting,) = [d for d in details if d.job.state is JobState.QUEUED]
    assert "quota" in waiting.job.reason
    assert waiting.job.spec.resources.accepted == ("ascend-910b", "metax-c500")
