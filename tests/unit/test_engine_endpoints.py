"""Replicas on engine backends: the endpoint comes from the backend's report of where it
placed the run, and the control plane routes to it only once that report checks out
(domain/endpoints.py, services/replicas.py). Through the real Deployments and ControlLoop
services with in-memory fakes: a backend reporting another node, another port or an address
it did not resolve never gets a route; the right one is health-checked, then routed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from fakes import FakeBackend, FakeClock, FakeDatabase, seed

from suanwang.domain.endpoints import EndpointRejected, placed_endpoint
from suanwang.domain.jobs import JobState
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.ports import EnginePlan, Handle, LaunchRequest, ReplicaLaunch, RunStatus
from suanwang.services.catalogue import default_catalogue
from suanwang.services.control import ControlLoop
from suanwang.services.deployments import Deployments
from suanwang.services.models import default_models

OP = Principal("op", Scope.OPERATOR, None)
MODEL = "qwen2.5-72b-instruct"  # 4 ascend cards: runs on the seeded engine cluster


# --- the validation rule ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("handle", "nodes", "port", "url"),
    [
        ({"node": "n0", "host": "10.1.2.3"}, ["n0"], 8100, "http://10.1.2.3:8100"),
        ({"node": "n0", "host": "127.0.0.1", "port": 8100}, ["n0"], 8100, "http://127.0.0.1:8100"),
        ({"node": "n0", "host": "fd00::7"}, ["n0", "n0"], 8100, "http://[fd00::7]:8100"),
    ],
)
def test_the_placed_node_and_the_given_port_make_the_endpoint(
    handle: Handle, nodes: list[str], port: int, url: str
) -> None:
    assert placed_endpoint(handle, nodes, port) == url


@pytest.mark.parametrize(
    ("handle", "nodes", "port", "why"),
    [
        ({"node": "n1", "host": "10.1.2.3"}, ["n0"], 8100, "reports node 'n1'"),
        ({"host": "10.1.2.3"}, ["n0"], 8100, "did not report the node"),
        ({"node": "n0"}, ["n0"], 8100, "did not report the node's address"),
        ({"node": "n0", "host": "10.1.2.3", "port": 9999}, ["n0"], 8100, "reports port 9999"),
        ({"node": "n0", "host": "10.1.2.3", "port": "8100"}, ["n0"], 8100, "reports port"),
        ({"node": "n0", "host": "evil.example"}, ["n0"], 8100, "not an IP address"),
        ({"node": "n0", "host": "10.1.2.3:22"}, ["n0"], 8100, "not an IP address"),
        ({"node": "n0", "host": "0.0.0.0"}, ["n0"], 8100, "cannot be routed"),
        ({"node": "n0", "host": "::"}, ["n0"], 8100, "cannot be routed"),
        ({"node": "n0", "host": "169.254.169.254"}, ["n0"], 8100, "cannot be routed"),
        ({"node": "n0", "host": "224.0.0.1"}, ["n0"], 8100, "cannot be routed"),
        ({"node": "n0", "host": "255.255.255.255"}, ["n0"], 8100, "cannot be routed"),
        ({"node": "n0", "host": 167837955}, ["n0"], 8100, "did not report the node's address"),
        ({"node": "n0", "host": "10.1.2.3"}, ["n0", "n1"], 8100, "one node"),
        ({"node": "n0", "host": "10.1.2.3"}, [], 8100, "one node"),
        ({"node": "n0", "host": "10.1.2.3"}, ["n0"], None, "no valid port"),
        ({"node": "n0", "host": "10.1.2.3"}, ["n0"], 70000, "no valid port"),
    ],
)
def test_any_other_report_is_refused_with_the_reason(
    handle: Handle, nodes: list[str], port: int | None, why: str
) -> None:
    with pytest.raises(EndpointRejected, match=why):
        placed_endpoint(handle, nodes, port)


# --- Kubernetes: the Service's ClusterIP inside the range the backend read -------------------
SERVICE = {"service_ip": "10.96.0.11", "service_cidrs": ["10.96.0.0/12"], "port": 8100}


def test_on_kubernetes_the_services_cluster_ip_and_port_make_the_endpoint() -> None:
    assert placed_endpoint(SERVICE, ["n0"], 8100, "kubernetes") == "http://10.96.0.11:8100"
    dual = {
        **SERVICE,
        "service_ip": "fd00:10:96::b",
        "service_cidrs": ["10.96.0.0/12", "fd00:10:96::/108"],
    }
    assert placed_endpoint(dual, ["n0"], 8100, "kubernetes") == "http://[fd00:10:96::b]:8100"


@pytest.mark.parametrize(
    ("lie", "why"),
    [
        ({"service_ip": "10.244.1.7"}, "outside the Service range 10.96.0.0/12"),  # a pod IP
        ({"service_ip": None, "host": "10.96.0.11"}, "did not report the Service's ClusterIP"),
        ({"service_ip": "None"}, "the Service's ClusterIP 'None' is not an IP address"),
        ({"service_ip": "127.0.0.1", "service_cidrs": ["127.0.0.0/8"]}, "loopback"),
        (
            {"service_ip": "169.254.169.254", "service_cidrs": ["169.254.0.0/16"]},
            "cannot be routed",
        ),
        ({"service_cidrs": []}, "did not report the cluster's Service range"),
        ({"service_cidrs": ["10.96.0.0/33"]}, "Service range is not valid"),
        ({"port": None}, "reports Service port None, but the replica's is 8100"),
        ({"port": 9000}, "reports Service port 9000, but the replica's is 8100"),
    ],
)
def test_on_kubernetes_anything_but_a_cluster_ip_in_the_range_is_refused(
    lie: dict[str, object], why: str
) -> None:
    with pytest.raises(EndpointRejected, match=why):
        placed_endpoint({**SERVICE, **lie}, ["n0"], 8100, "kubernetes")


def test_the_service_rule_is_for_kubernetes_only() -> None:
    with pytest.raises(EndpointRejected, match="did not report the node the engine runs on"):
        placed_endpoint(SERVICE, ["n0"], 8100, "slurm")


# --- through the services -----------------------------------------------------------------
class PlacingBackend(FakeBackend):
    """Reports ``host`` for the node it was given (``lie`` overrides fields of the report)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.host = "10.0.0.7"
        self.lie: dict[str, object] = {}

    def submit(self, request: LaunchRequest) -> RunStatus:
        status = super().submit(request)
        node = request.placements[0].node
        handle = {"node": node, "host": self.host, **self.lie}
        return RunStatus(status.state, handle, started_at=status.started_at)


@dataclass
class FakeLauncher:
    plans: list[ReplicaLaunch] = field(default_factory=list)
    next_port: int = 8100

    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        self.plans.append(launch)
        return EnginePlan(("engine", "--port", str(launch.port)), (), "")

    def free_port(self, taken: set[int]) -> int:
        while self.next_port in taken:
            self.next_port += 1
        return self.next_port


@dataclass
class FakeProbe:
    answering: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def healthy(self, base_urls: list[str]) -> dict[str, bool]:
        self.asked += base_urls
        return {u: u in self.answering for u in base_urls}


@dataclass
class Plane:
    db: FakeDatabase
    backend: PlacingBackend
    launcher: FakeLauncher
    probe: FakeProbe
    deployments: Deployments
    loop: ControlLoop

    def step(self) -> None:
        self.deployments.converge()
        self.loop.tick()
        self.deployments.converge()
        self.deployments.check_health()

    def replica(self) -> tuple[ReplicaState, str, str]:
        (r,) = self.db.tables.replicas.values()
        return r.state, r.base_url, r.reason


@pytest.fixture
def plane() -> Plane:
    db, clock = FakeDatabase(), FakeClock()
    seed(db)
    backend, launcher, probe = PlacingBackend(clock), FakeLauncher(), FakeProbe()
    catalogue = default_catalogue()
    deployments = Deployments(
        db, clock, catalogue, default_models(), launcher, probe, probe_interval_s=0.0
    )
    loop = ControlLoop(db, {"fake": backend}, clock, catalogue)
    plane = Plane(db, backend, launcher, probe, deployments, loop)
    deployments.deploy(OP, MODEL, "here", 1, tenant="acme")
    return plane


def test_a_replica_on_an_engine_backend_is_routed_at_the_placed_node_and_given_port(
    plane: Plane,
) -> None:
    (launch,) = plane.launcher.plans
    assert (launch.backend, launch.port) == ("fake", 8100)  # the control plane chose the port
    plane.probe.answering.add("http://10.0.0.7:8100")
    plane.step()
    (request,) = plane.backend.submitted
    assert request.command == ("engine", "--port", "8100")
    # what Kubernetes needs for the image and the Service, from the replica and deployment
    assert (request.engine, request.port, request.family) == ("vllm-ascend", 8100, "ascend")
    assert plane.replica() == (ReplicaState.READY, "http://10.0.0.7:8100", "engine answers")
    assert plane.probe.asked == ["http://10.0.0.7:8100"]


def test_an_engine_not_answering_at_its_endpoint_is_not_ready(plane: Plane) -> None:
    plane.step()
    state, url, _ = plane.replica()
    assert (state, url) == (ReplicaState.STARTING, "http://10.0.0.7:8100")
    assert plane.probe.asked == [url]


@pytest.mark.parametrize(
    ("lie", "why"),
    [
        ({"node": "n1"}, "the backend reports node 'n1', but the engine was placed on 'n0'"),
        ({"port": 8101}, "the backend reports port 8101, but the replica's is 8100"),
        (
            {"host": "metadata.internal"},
            "the node address 'metadata.internal' is not an IP address",
        ),
        ({"host": "169.254.169.254"}, "the node address 169.254.169.254 cannot be routed to"),
    ],
)
def test_a_report_naming_another_node_or_port_is_refused_and_its_run_stopped(
    plane: Plane, lie: dict[str, object], why: str
) -> None:
    plane.backend.lie = lie
    plane.step()
    state, url, reason = plane.replica()
    assert (state, url) == (ReplicaState.UNHEALTHY, "")
    assert reason == f"endpoint rejected: {why}"
    assert plane.probe.asked == []  # never asked, never routed
    (job,) = plane.db.tables.jobs.values()
    assert job.cancel_requested
    assert job.reason == reason
    plane.loop.tick()  # the control loop stops the run...
    plane.loop.tick()
    assert plane.backend.cancelled == [(job.id, 1)]
    assert plane.db.tables.jobs[job.id].state is JobState.CANCELLED
    plane.deployments.converge()  # ...and the replica restarts on a new one
    (replica,) = plane.db.tables.replicas.values()
    assert (replica.state, replica.restarts, replica.base_url) == (ReplicaState.PENDING, 1, "")
    assert replica.job != job.id


def test_a_run_on_another_backend_than_the_clusters_is_refused(plane: Plane) -> None:
    plane.deployments.converge()
    plane.loop.tick()
    with plane.db() as uow:
        (attempt,) = uow.jobs.live_attempts()
    plane.db.tables.attempts[attempt.id] = replace(attempt, backend="local")
    plane.deployments.converge()
    state, url, reason = plane.replica()
    assert (state, url) == (ReplicaState.UNHEALTHY, "")
    assert reason == "endpoint rejected: the run is on backend 'local', not the cluster's 'fake'"
