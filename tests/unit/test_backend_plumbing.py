"""Shared plumbing of the engine backends: engine-side run names, lazily built backends (an
engine whose library is missing makes its clusters unhealthy, never the core fail to start)
and the connection the control loop hands to ``submit``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.adapters.backends.lazy import (
    BackendUnavailable,
    LazyBackend,
    load_target,
    module_present,
)
from suanwang.bootstrap import engine_backends
from suanwang.config import Settings
from suanwang.domain.connections import RayConnection
from suanwang.domain.errors import Unavailable
from suanwang.domain.ids import TenantId
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.workloads import Workload
from suanwang.ports import (
    Backend,
    ClusterCapacity,
    EngineUnreachable,
    RunStatus,
    parse_run_name,
    run_name,
)
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop
from suanwang.services.jobs import Jobs

ACME = Principal("key-1", Scope.TENANT_ADMIN, TenantId("acme"))


@pytest.mark.parametrize(("job_id", "attempt"), [("j-1a2b", 1), ("job", 12), ("a-b-c", 3)])
def test_run_names_round_trip(job_id: str, attempt: int) -> None:
    assert parse_run_name(run_name(job_id, attempt)) == (job_id, attempt)


@pytest.mark.parametrize(
    "name",
    [
        "ray-job-1",
        "suanwang-",
        "suanwang-x",
        "suanwang--1",
        "suanwang-j-0",
        "suanwang-j-01",
        "suanwang-j-1a",
    ],
)
def test_foreign_names_are_not_runs(name: str) -> None:
    assert parse_run_name(name) is None


def test_a_backend_whose_build_fails_reports_unhealthy_and_refuses() -> None:
    calls = []

    def build() -> Backend:
        calls.append(1)
        raise ImportError("No module named 'ray'")

    lazy = LazyBackend("ray", build)
    assert calls == []  # nothing is built before first use
    capacity = lazy.capacity("c1", RayConnection("http://h:8265"))
    assert capacity == ClusterCapacity(
        healthy=False, reason="the ray backend is unavailable: No module named 'ray'"
    )
    assert lazy.refusal(Workload.TENANT_JOB) == capacity.reason
    with pytest.raises(BackendUnavailable, match="No module named 'ray'"):
        lazy.poll("j", 1, {})
    with pytest.raises(BackendUnavailable):
        lazy.runs("c1", None)
    assert calls == [1]  # built (and failed) once, not on every call


def test_a_lazy_backend_delegates_once_built() -> None:
    clock = FakeClock()
    fake = FakeBackend(clock)
    built = []

    def build() -> Backend:
        built.append(1)
        return fake

    lazy = LazyBackend("fake", build)
    assert lazy.capacity("c1", None) is fake.health
    assert lazy.poll("j", 1, {}).handle == {"run": "j#1"}
    lazy.cancel("j", 1, {})
    assert fake.cancelled == [("j", 1)]
    assert built == [1]


def test_targets_are_found_without_importing_them() -> None:
    assert module_present("suanwang.adapters.backends.simulated:SimulatedBackend")
    assert not module_present("suanwang.adapters.backends.nonexistent:X")
    assert not module_present("no_such_package.sub:X")
    assert load_target("suanwang.adapters.backends.simulated:SimulatedBackend").__name__ == (
        "SimulatedBackend"
    )
    with pytest.raises(ValueError, match="module:Name"):
        load_target("suanwang.adapters.backends.simulated")


def test_only_installed_engine_modules_are_registered(tmp_path: object) -> None:
    targets = {
        "sim2": "suanwang.adapters.backends.simulated:SimulatedBackend",
        "ghost": "suanwang.adapters.backends.ghost:GhostBackend",
    }
    settings = Settings(data_dir=f"{tmp_path}/data", sim_speedup=4.0)
    found = engine_backends(settings, FakeClock(), targets)
    assert set(found) == {"sim2"}
    # built as Name(clock, settings): SimulatedBackend takes (clock, speedup) and so fails
    # on the Settings object: the failure is the cluster's health, not an exception
    assert not found["sim2"].capacity("c", None).healthy


def test_the_core_imports_no_engine_library() -> None:
    probe = (
        "import sys, suanwang.bootstrap, suanwang.cli.main\n"
        "engines = ('ray', 'kubernetes', 'suanwang.adapters.backends.ray',"
        " 'suanwang.adapters.backends.slurm', 'suanwang.adapters.backends.kube')\n"
        "print(sorted(m for m in sys.modules if m.startswith(engines)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_control_loop_hands_the_clusters_connection_to_submit() -> None:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    ray = RayConnection("http://10.1.2.3:8265")
    with db() as uow:
        (here,) = uow.fleet.clusters()
        uow.t.clusters["here"] = replace(here, connection=ray)
        uow.commit()
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    spec = JobSpec(
        name="t", command=("true",), resources=Resources(chip="ascend", cards_per_node=8)
    )
    jobs.submit(ACME, spec, None)
    ControlLoop(db, {"fake": backend}, clock, catalogue).tick()
    (launch,) = backend.submitted
    assert launch.connection == ray
    assert launch.cluster == "here"
    assert launch.chip.startswith("ascend-")  # the admitted chip type, for resource names


def test_logs_of_an_unreachable_engine_are_a_503_not_a_crash() -> None:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    spec = JobSpec(
        name="t", command=("true",), resources=Resources(chip="ascend", cards_per_node=8)
    )
    job = jobs.submit(ACME, spec, None).job
    ControlLoop(db, {"fake": backend}, clock, catalogue).tick()

    def unreachable(*_: object) -> bytes:
        raise EngineUnreachable("connection refused")

    backend.logs = unreachable  # type: ignore[method-assign]
    with pytest.raises(Unavailable, match="cannot be reached: connection refused") as err:
        jobs.logs(ACME, job.id, 0, 100)
    assert err.value.status == 503
    with pytest.raises(Unavailable, match="not installed"):
        Jobs(db, clock, catalogue, {}).tail(ACME, job.id, 0, 100, None)


def test_an_unreachable_engine_fails_no_job_and_starts_no_second_run() -> None:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend = FakeBackend(clock)
    catalogue = default_catalogue()
    jobs = Jobs(db, clock, catalogue, {"fake": backend})
    loop = ControlLoop(db, {"fake": backend}, clock, catalogue)
    spec = JobSpec(
        name="t", command=("true",), resources=Resources(chip="ascend", cards_per_node=8)
    )
    job = jobs.submit(ACME, spec, None).job
    real_submit, real_poll = backend.submit, backend.poll

    def down(*_: object) -> RunStatus:
        raise EngineUnreachable("timed out")

    backend.submit = down  # type: ignore[method-assign]
    loop.tick()
    loop.tick()
    assert db.tables.jobs[job.id].state is JobState.ADMITTED  # waiting, not failed
    backend.submit = real_submit  # type: ignore[method-assign]
    loop.tick()
    assert db.tables.jobs[job.id].state is JobState.RUNNING
    backend.poll = down  # type: ignore[method-assign]
    loop.tick()
    assert db.tables.jobs[job.id].state is JobState.RUNNING
    backend.poll = real_poll  # type: ignore[method-assign]
    backend.end(job.id, 1, AttemptState.SUCCEEDED, exit_code=0)
    loop.tick()
    assert db.tables.jobs[job.id].state is JobState.SUCCEEDED
    assert len(db.tables.attempts) == 1
