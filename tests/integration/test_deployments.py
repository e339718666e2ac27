"""Deployments through the real control loop, local backend and database (SQLite and PostgreSQL).

The engine here is a stub HTTP server (answers ``GET /v1/models``) so these tests stay fast;
``test_engines_real.py`` runs the same path with llama.cpp and SmolLM2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.deployments import MAX_FAST_FAILURES
from suanwang.domain.errors import Forbidden, NotFound, ValidationError
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.engines import HttpProbe, LocalEngines
from suanwang.ports import EnginePlan, ReplicaLaunch
from suanwang.services.control import ControlLoop
from suanwang.services.deployments import DeploymentDetail, Deployments
from suanwang.services.models import default_models
from suanwang.services.platform import Platform

FLEET = """
regions: [{name: local}, {name: r1}]
clusters:
  - {name: local, region: local, kind: real, backend: local, nodes: [{name: n1, chip: cpu, cards: 4}]}
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 16}]}
"""
STUB = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "stub"}]}).encode()
        self.send_response(200 if self.path in ("/v1/models", "/health") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
OP = Principal("op", Scope.OPERATOR, None)
MODEL = "smollm2-135m-instruct"


class StubEngines(LocalEngines):
    """Local replicas run the stub server (or ``fail_with`` exits at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        if launch.backend != "local":
            return super().plan(launch)
        assert launch.port is not None
        code = "import sys; sys.exit(3)" if self.fail else STUB
        command = (sys.executable, "-c", code, str(launch.port))
        return EnginePlan(command, (), f"http://127.0.0.1:{launch.port}")


@pytest.fixture
def world(settings: Settings) -> Iterator[tuple[Platform, StubEngines, Settings]]:
    platform, engines = _stub_platform(settings)
    platform.fleet.apply_yaml(FLEET)
    yield platform, engines, settings
    for detail in platform.deployments.list(OP):
        platform.deployments.delete(OP, detail.deployment.id)
    _drive(platform, lambda: not _live_jobs(platform), timeout=15)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def _stub_platform(settings: Settings) -> tuple[Platform, StubEngines]:
    base = build_platform(settings)
    engines = StubEngines()
    deps = Deployments(
        base.uows, base.clock, base.catalogue, default_models(), engines, HttpProbe(0.5), 0.0
    )
    control = ControlLoop(
        base.uows, base.backends, base.clock, base.catalogue, after_reconcile=(deps.converge,)
    )
    return replace(base, deployments=deps, control=control), engines


def _drive(platform: Platform, done: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not met in time"
        platform.control.tick()
        platform.deployments.check_health()
        time.sleep(0.05)


def _live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


def _detail(platform: Platform, dep_id: str) -> DeploymentDetail:
    return platform.deployments.get(OP, dep_id)


def _ready(platform: Platform, dep_id: str, n: int) -> Callable[[], bool]:
    def check() -> bool:
        replicas = _detail(platform, dep_id).replicas
        return sum(r.state is ReplicaState.READY for r in replicas) == n

    return check


def _child_pid(settings: Settings, job_id: str) -> int:
    launches = sorted((settings.runs_dir / job_id).glob("*/launch.json"))
    return int(json.loads(Path(launches[-1]).read_text())["child_pid"])


def test_deploy_ready_kill_restart_scale_delete(
    world: tuple[Platform, StubEngines, Settings],
) -> None:
    platform, _, settings = world
    dep = platform.deployments.deploy(OP, MODEL, "local", 1).deployment
    assert (dep.engine, dep.chip, dep.tenant) == ("llama.cpp", "cpu", None)
    _drive(platform, _ready(platform, dep.id, 1))
    replica = _detail(platform, dep.id).replicas[0]
    assert httpx.get(f"{replica.base_url}/v1/models", timeout=2).status_code == 200
    views = platform_views(platform)
    assert [(v.replica_id, v.owner_tenant) for v in views] == [(replica.id, None)]

    assert replica.job is not None
    os.kill(_child_pid(settings, replica.job), signal.SIGKILL)
    _drive(platform, lambda: _detail(platform, dep.id).replicas[0].restarts == 1)
    _drive(platform, _ready(platform, dep.id, 1))
    again = _detail(platform, dep.id).replicas[0]
    assert (again.port, again.failures) == (replica.port, 1)
    assert again.job != replica.job
    assert len(_live_jobs(platform)) == 1

    platform.deployments.scale(OP, dep.id, 2)
    _drive(platform, _ready(platform, dep.id, 2))
    ports = {r.port for r in _detail(platform, dep.id).replicas}
    assert len(ports) == 2
    platform.deployments.scale(OP, dep.id, 1)
    after = _detail(platform, dep.id).replicas
    assert [r.state for r in after] == [ReplicaState.READY, ReplicaState.STOPPED]
    _drive(platform, lambda: len(_live_jobs(platform)) == 1)

    platform.deployments.delete(OP, dep.id)
    _drive(platform, lambda: not _live_jobs(platform))
    assert platform_views(platform) == []


def test_control_plane_restart_keeps_replica(
    world: tuple[Platform, StubEngines, Settings],
) -> None:
    """A new control plane on the same database re-attaches: same job, ready again."""
    platform, _, settings = world
    dep = platform.deployments.deploy(OP, MODEL, "local", 1).deployment
    _drive(platform, _ready(platform, dep.id, 1))
    before = _detail(platform, dep.id).replicas[0]
    second, _ = _stub_platform(settings)
    try:
        for _ in range(5):
            second.control.tick()
            second.deployments.check_health()
        after = _detail(second, dep.id).replicas[0]
        assert (after.job, after.port, after.state) == (before.job, before.port, before.state)
    finally:
        second.uows.engine.dispose()  # type: ignore[attr-defined]


def test_crash_loop_gives_up_with_reason(world: tuple[Platform, StubEngines, Settings]) -> None:
    platform, engines, _ = world
    engines.fail = True
    dep = platform.deployments.deploy(OP, MODEL, "local", 1).deployment

    def stopped() -> bool:
        return _detail(platform, dep.id).replicas[0].state is ReplicaState.STOPPED

    _drive(platform, stopped, timeout=30)
    replica = _detail(platform, dep.id).replicas[0]
    assert replica.failures == MAX_FAST_FAILURES
    assert "gave up" in replica.reason
    assert "exited 3" in replica.reason
    engines.fail = False
    platform.deployments.scale(OP, dep.id, 1)  # a scale gives it a fresh start
    _drive(platform, _ready(platform, dep.id, 1))


def test_simulated_replicas_and_ownership(world: tuple[Platform, StubEngines, Settings]) -> None:
    platform, _, _ = world
    platform.tenancy.create_tenant("acme", "acme", {})
    platform.tenancy.create_tenant("other", "other", {})
    admin = Principal("k1", Scope.TENANT_ADMIN, "acme")  # type: ignore[arg-type]
    stranger = Principal("k2", Scope.TENANT_ADMIN, "other")  # type: ignore[arg-type]
    public = platform.deployments.deploy(OP, "qwen2.5-72b-instruct", "sim", 2).deployment
    assert (public.engine, public.simulated) == ("vllm-ascend", True)
    first = platform.deployments.deploy(admin, "glm-4-9b-chat", "sim", 1, idempotency_key="k1")
    assert first.deployment.tenant == "acme"
    retried = platform.deployments.deploy(admin, "glm-4-9b-chat", "sim", 1, idempotency_key="k1")
    assert retried.deployment.id == first.deployment.id
    with pytest.raises(ValidationError):
        platform.deployments.deploy(admin, "bge-m3", "sim", 1, idempotency_key="k1")
    private = first.deployment
    _drive(platform, _ready(platform, public.id, 2))
    _drive(platform, _ready(platform, private.id, 1))
    urls = sorted(v.base_url for v in platform_views(platform))
    assert urls == sorted([f"sim://{public.id}-0", f"sim://{public.id}-1", f"sim://{private.id}-0"])
    assert {d.deployment.id for d in platform.deployments.list(stranger)} == {public.id}
    assert platform.deployments.replica_counts() == {"ready-simulated": 3}
    with pytest.raises(NotFound):
        platform.deployments.scale(stranger, private.id, 3)
    with pytest.raises(Forbidden):
        platform.deployments.scale(admin, public.id, 3)
    with pytest.raises(ValidationError):
        platform.deployments.deploy(admin, MODEL, "sim", 1)  # no cpu on the simulated cluster
    with pytest.raises(ValidationError):
        platform.deployments.deploy(OP, "qwen2.5-72b-instruct", "sim", 1, engine="llama.cpp")


def platform_views(platform: Platform) -> list:  # type: ignore[type-arg]
    with platform.uows() as uow:
        return uow.deployments.ready_views()
