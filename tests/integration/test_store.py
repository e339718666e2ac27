"""The control plane end to end through services, on SQLite and PostgreSQL: fleet apply,
tenants and keys, job submission, scheduling, real local execution, cancel, retries."""

from __future__ import annotations

import time

import pytest

from suanwang.config import Settings
from suanwang.domain.errors import Conflict, NotFound, Unauthenticated, ValidationError
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.records import NodeCards, shapes_of
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.demo import load_demo
from suanwang.services.platform import Platform

SMALL_FLEET = """
regions:
  - {name: r1, display_name: Region One}
  - {name: r2}
clusters:
  - name: sim
    region: r1
    kind: simulated
    node_groups: [{name_prefix: s, count: 4, chip: ascend-910b, cards: 8, nodes_per_network_group: 2}]
  - name: here
    region: r2
    kind: real
    nodes: [{name: n1, chip: cpu, cards: 2}]
wan_links:
  - {between: [r1, r2], bandwidth_gbps: 10, rtt_ms: 30, distance_km: 3000}
"""


def tenant_principal(
    platform: Platform, name: str = "acme", scope: Scope = Scope.TENANT_ADMIN
) -> Principal:
    platform.tenancy.create_tenant(name, name.title(), {"cpu": 2, "ascend": 16})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None), tenant=name, scope=scope, name="t", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def run_until(
    platform: Platform,
    job_id: str,
    principal: Principal,
    states: set[JobState],
    clock_step: float = 0.0,
    timeout_s: float = 15.0,
) -> JobState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        platform.control.tick()
        state = platform.jobs.get(principal, job_id).job.state
        if state in states:
            return state
        if clock_step:
            platform.clock.advance(clock_step)  # type: ignore[attr-defined]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck in {state}")


def test_fleet_apply_is_idempotent_and_updates_in_place(platform: Platform) -> None:
    first = platform.fleet.apply_yaml(SMALL_FLEET)
    assert first.changed
    assert "cluster/sim" in first.created
    second = platform.fleet.apply_yaml(SMALL_FLEET)
    assert not second.changed
    changed = platform.fleet.apply_yaml(SMALL_FLEET.replace("cards: 2}", "cards: 4}"))
    assert changed.updated == ["node/here/n1"]
    overall, regions = platform.fleet.totals()
    assert overall.cards_by_chip == {"ascend-910b": 32, "cpu": 4}
    assert overall.simulated_cards == 32
    assert overall.real_cards == 4
    assert [r.scope for r in regions] == ["r1", "r2"]
    assert overall.pflops_fp16 == pytest.approx(32 * 280 / 1000)


def test_demo_fleet_totals(platform: Platform) -> None:
    load_demo(platform)
    assert not load_demo(platform).changed
    overall, _ = platform.fleet.totals()
    assert overall.cards_by_chip["ascend-910b"] == 10_000
    assert overall.cards_by_chip["nvidia-h20"] == 1_000
    assert {c.name: c.kind for c in platform.fleet.view().clusters}["local"] == "real"
    with platform.uows() as uow:  # the submit path counts shapes in SQL: same as in Python
        shapes, nodes = uow.fleet.node_shapes(), uow.fleet.nodes()
    assert sorted(shapes, key=repr) == sorted(shapes_of(nodes), key=repr)
    assert sum(s.count for s in shapes) == len(nodes) > 1000


def test_node_with_running_work_is_never_deleted(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(
        name="sleep",
        command=("sleep", "30"),
        resources=Resources(chip="cpu"),
    )
    job = platform.jobs.submit(acme, spec, None).job
    run_until(platform, job.id, acme, {JobState.RUNNING})
    without_node = SMALL_FLEET.replace("nodes: [{name: n1, chip: cpu, cards: 2}]", "nodes: []")
    with pytest.raises(Conflict, match="running work"):
        platform.fleet.apply_yaml(without_node)
    assert [n.name for n in platform.fleet.nodes("here")] == ["n1"]
    platform.jobs.cancel(acme, job.id)
    assert run_until(platform, job.id, acme, {JobState.CANCELLED}) is JobState.CANCELLED
    platform.fleet.apply_yaml(without_node)
    assert platform.fleet.nodes("here") == []


def test_local_job_really_runs(platform: Platform, settings: Settings) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(
        name="write",
        command=("python", "-c", "open('out.txt','w').write('ok'); print('hi')"),
        resources=Resources(chip="cpu"),
    )
    job = platform.jobs.submit(acme, spec, None).job
    assert (
        run_until(platform, job.id, acme, {JobState.SUCCEEDED, JobState.FAILED})
        is JobState.SUCCEEDED
    )
    work = settings.runs_dir / job.id / "work"  # the job's own directory
    assert (work / "out.txt").read_text() == "ok"
    output, attempt = platform.jobs.logs(acme, job.id, 0, 1000)
    assert b"hi" in output
    assert attempt is not None
    assert attempt.exit_code == 0
    detail = platform.jobs.get(acme, job.id)
    assert [e.state for e in detail.events] == ["queued", "admitted", "running", "succeeded"]
    assert platform.fleet.nodes("here")[0].cards_used == 0


def test_failed_job_retries_then_fails(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(
        name="bad",
        command=("sh", "-c", "exit 3"),
        resources=Resources(chip="cpu"),
        retries=1,
    )
    job = platform.jobs.submit(acme, spec, None).job
    assert (
        run_until(platform, job.id, acme, {JobState.FAILED, JobState.SUCCEEDED}) is JobState.FAILED
    )
    detail = platform.jobs.get(acme, job.id)
    assert [a.exit_code for a in detail.attempts] == [3, 3]
    assert "attempt 2 exited 3" in detail.job.reason


def test_simulated_job_completes_on_simulated_clock(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(
        name="train",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8, nodes=2),
        simulate_duration_s=3600,
    )
    job = platform.jobs.submit(acme, spec, None).job
    run_until(platform, job.id, acme, {JobState.RUNNING})
    platform.clock.advance(3599)  # type: ignore[attr-defined]
    platform.control.tick()
    assert platform.jobs.get(acme, job.id).job.state is JobState.RUNNING
    platform.clock.advance(2)  # type: ignore[attr-defined]
    assert run_until(platform, job.id, acme, {JobState.SUCCEEDED}) is JobState.SUCCEEDED
    attempt = platform.jobs.get(acme, job.id).attempts[0]
    assert attempt.backend == "simulated"
    assert attempt.cluster == "sim"
    assert len({p.node for p in attempt.placements}) == 2


def test_jobs_and_attempts_come_back_typed_as_they_were_submitted(platform: Platform) -> None:
    """The repository decodes the stored spec and placements once: a JobSpec equal to the
    one submitted, and the placements as NodeCards (node id and name) that hold the cards."""
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(
        name="train",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8, nodes=2, region="r1"),
        env=(("A", "1"), ("B", "two")),
        simulate_duration_s=3600,
        expected_duration_s=1800.0,
        checkpoint_interval_s=60.0,
        kind="resnet",
        speed=(("ascend-910b", 1.5),),
        retries=2,
    )
    job = platform.jobs.submit(acme, spec, None).job
    run_until(platform, job.id, acme, {JobState.RUNNING})
    detail = platform.jobs.get(acme, job.id)
    assert detail.job.spec == spec
    (attempt,) = detail.attempts
    assert all(isinstance(p, NodeCards) for p in attempt.placements)
    assert [p.cards for p in attempt.placements] == [8, 8]
    assert sum(p.cards for p in attempt.placements) == attempt.cards
    assert len({p.node_id for p in attempt.placements}) == 2
    assert all(p.node.startswith("s") for p in attempt.placements)  # the sim cluster's names


def test_quota_holds_jobs_back(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)  # ascend quota 16
    spec = JobSpec(
        name="t",
        command=(),
        resources=Resources(chip="ascend", cards_per_node=8, nodes=2),
        simulate_duration_s=100,
    )
    first = platform.jobs.submit(acme, spec, None).job
    platform.clock.advance(1)  # type: ignore[attr-defined]
    second = platform.jobs.submit(acme, spec, None).job
    platform.control.tick()
    assert platform.jobs.get(acme, first.id).job.state is JobState.RUNNING
    held = platform.jobs.get(acme, second.id).job
    assert held.state is JobState.QUEUED
    assert "quota" in held.reason


def test_idempotency_key_replays_and_rejects_changed_body(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(name="t", command=(), resources=Resources(chip="ascend"), simulate_duration_s=5)
    first = platform.jobs.submit(acme, spec, "k1")
    again = platform.jobs.submit(acme, spec, "k1")
    assert not first.replayed
    assert again.replayed
    assert again.job.id == first.job.id
    with pytest.raises(ValidationError, match="different request body"):
        platform.jobs.submit(acme, JobSpec(name="other", command=(), simulate_duration_s=5), "k1")
    other = tenant_principal(platform, "other")
    assert platform.jobs.submit(other, spec, "k1").job.id != first.job.id


def test_keys_hash_only_revoke_and_expiry(platform: Platform) -> None:
    tenant_principal(platform)
    op = Principal("op", Scope.OPERATOR, None)
    new = platform.tenancy.create_key(
        op, tenant="acme", scope=Scope.READ_ONLY, name="ro", expires_in_s=60
    )
    assert platform.tenancy.authenticate(new.secret).scope is Scope.READ_ONLY
    assert new.secret not in repr(new.record)
    assert new.record.secret_hash != new.secret
    platform.clock.advance(61)  # type: ignore[attr-defined]
    with pytest.raises(Unauthenticated):
        platform.tenancy.authenticate(new.secret)
    fresh = platform.tenancy.create_key(
        op, tenant="acme", scope=Scope.TENANT_MEMBER, name="m", expires_in_s=None
    )
    platform.tenancy.revoke_key(op, fresh.record.id)
    with pytest.raises(Unauthenticated):
        platform.tenancy.authenticate(fresh.secret)
    with pytest.raises(Unauthenticated):
        platform.tenancy.authenticate(fresh.secret[:-1] + ("A" if fresh.secret[-1] != "A" else "B"))


def test_tenant_cannot_see_other_tenants_jobs(platform: Platform) -> None:
    platform.fleet.apply_yaml(SMALL_FLEET)
    a, b = tenant_principal(platform, "aaa"), tenant_principal(platform, "bbb")
    spec = JobSpec(name="t", command=(), resources=Resources(chip="ascend"), simulate_duration_s=5)
    job = platform.jobs.submit(a, spec, None).job
    with pytest.raises(NotFound):
        platform.jobs.get(b, job.id)
    with pytest.raises(NotFound):
        platform.jobs.cancel(b, job.id)
    assert platform.jobs.list(b, None, 100) == []


def test_lost_run_is_requeued_by_retry_policy(platform: Platform) -> None:
    """A run that dies without an exit record (its host 'crashed') is retried, never doubled."""
    import contextlib
    import json
    import os
    import signal

    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    script = 'if [ "$SUANWANG_ATTEMPT" = 1 ]; then sleep 30; fi; echo attempt $SUANWANG_ATTEMPT'
    spec = JobSpec(
        name="flaky-host",
        command=("sh", "-c", script),
        resources=Resources(chip="cpu"),
        retries=1,
    )
    job = platform.jobs.submit(acme, spec, None).job
    run_until(platform, job.id, acme, {JobState.RUNNING})
    runs = platform.backends["local"].runs_dir  # type: ignore[attr-defined]
    launch = json.loads((runs / job.id / "1" / "launch.json").read_text())
    os.kill(launch["shim_pid"], signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # a sandboxed run dies with its supervisor
        os.killpg(launch["pgid"], signal.SIGKILL)
    assert (
        run_until(platform, job.id, acme, {JobState.SUCCEEDED, JobState.FAILED})
        is JobState.SUCCEEDED
    )
    detail = platform.jobs.get(acme, job.id)
    assert [a.state.value for a in detail.attempts] == ["lost", "succeeded"]
    assert b"attempt 2" in platform.jobs.logs(acme, job.id, 0, 1000)[0]


def test_concurrent_submissions_with_one_key_make_one_job(platform: Platform) -> None:
    from concurrent.futures import ThreadPoolExecutor

    platform.fleet.apply_yaml(SMALL_FLEET)
    acme = tenant_principal(platform)
    spec = JobSpec(name="t", command=(), resources=Resources(chip="ascend"), simulate_duration_s=5)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: platform.jobs.submit(acme, spec, "same-key"), range(10)))
    assert len({r.job.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(platform.jobs.list(acme, None, 100)) == 1
