"""RayBackend against a fake JobSubmissionClient and a recorded state-API answer (no Ray).

The fake answers as Ray 2.60's client does: ``RuntimeError("Request failed with status
code 404: ...")`` for an unknown submission id, 400 for a duplicate one, the builtin
``ConnectionError`` when the dashboard cannot be reached. tests/data/ray/nodes-2.60.json is
``GET /api/v0/nodes?detail=true`` of the test cluster of tests/integration/ray_cluster.py
(a head and a worker with 8 Ascend910B each), plus a third row made DEAD by hand.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError as Invalid

from suanwang.adapters.backends import suanwang_ray_gang as gang
from suanwang.adapters.backends.ray import TIMEOUT_S, RayBackend, bounded
from suanwang.adapters.backends.ray_state import RayNode, capacity_of
from suanwang.adapters.backends.ray_submit import GANG_DRIVER, Confine, render
from suanwang.adapters.backends.sandbox import RootLayout
from suanwang.adapters.http.schemas import JobCreate
from suanwang.config import Settings
from suanwang.domain.connections import RayConnection, SlurmConnection
from suanwang.domain.jobs import AttemptState, spec_from_dict, spec_to_dict
from suanwang.domain.workloads import GangStrategy, JobNetwork, Workload
from suanwang.ports import EngineUnreachable, LaunchRequest, NodeSlice

NODES = json.loads((Path(__file__).resolve().parents[1] / "data/ray/nodes-2.60.json").read_text())
ADDRESS = "http://127.0.0.1:8265"
CONNECTION = RayConnection(address=ADDRESS)
HOSTILE = [
    ("echo", "ok\n; ray stop"),
    ("sh", "-c", "'; kill -9 -1; echo '"),
    ("X=1", "rm", "-rf", "/"),
    ("$(id)", "`id`", "a b\tc", "--uid=0", "*", "~root", "$HOME", "\\", '"', "'"),
]


class FakeClock:
    def now(self) -> float:
        return 1_800_000_000.0


@dataclass
class Details:
    """A ``JobDetails`` as the client returns it (the fields the backend reads)."""

    submission_id: str
    status: str = "PENDING"
    message: str | None = None
    start_time: int | None = 1_800_000_000_000
    end_time: int | None = None
    driver_exit_code: int | None = None
    driver_node_id: str | None = None


class FakeRay:
    """A Ray cluster's job API: jobs by submission id, logs, every call recorded."""

    def __init__(self) -> None:
        self.jobs: dict[str, Details] = {}
        self.logs: dict[str, str] = {}
        self.submitted: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self.down = False
        self.built: list[str] = []

    def factory(self, address: str) -> FakeRay:
        self.built.append(address)
        self._check()
        return self

    def _check(self) -> None:
        if self.down:
            raise ConnectionError(f"Failed to connect to Ray at address: {ADDRESS}.")

    def _known(self, job_id: str) -> Details:
        self._check()
        if job_id not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not exist.")
        return self.jobs[job_id]

    def submit_job(self, **kwargs: Any) -> str:
        self._check()
        sid = kwargs["submission_id"]
        if sid in self.jobs:
            raise RuntimeError(f"Request failed with status code 400: Job {sid} already exists.")
        self.submitted.append(kwargs)
        self.jobs[sid] = Details(sid)
        return str(sid)

    def get_job_info(self, job_id: str) -> Details:
        return self._known(job_id)

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        self._known(job_id).status = "STOPPED"
        return True

    def get_job_logs(self, job_id: str) -> str:
        self._known(job_id)
        return self.logs.get(job_id, "")

    def list_jobs(self) -> list[Details]:
        self._check()
        return [*self.jobs.values(), Details("raysubmit_abc", "RUNNING")]


class FakeDashboard:
    def __init__(self, ray: FakeRay) -> None:
        self.ray = ray
        self.urls: list[str] = []

    def __call__(self, url: str) -> Any:
        self.urls.append(url)
        if self.ray.down:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if url.endswith("/api/version"):
            return {"ray_version": "2.60.0"}
        return NODES


def backend(ray: FakeRay, isolation: str = "sandbox") -> RayBackend:
    settings = Settings(data_dir=Path("/nonexistent"), local_isolation=isolation)
    return RayBackend(
        FakeClock(),
        settings,
        client_factory=ray.factory,
        fetch=FakeDashboard(ray),
        bwrap=BWRAP,
    )


BWRAP = "/usr/bin/bwrap"
LAYOUT = RootLayout((("/bin", "usr/bin"), ("/lib", "usr/lib")), ("/sbin",))


def confined(entrypoint: str, bwrap: str = BWRAP) -> list[str]:
    """The argv a tenant's entrypoint execs once bwrap was found on the node."""
    guard, _, rest = entrypoint.partition("; exec ")
    assert guard.startswith(f"command -v {bwrap} >/dev/null 2>&1 || ")
    assert "exit 127" in guard
    return shlex.split(rest)


def request(
    command: tuple[str, ...] = ("python", "train.py"),
    *,
    placements: tuple[NodeSlice, ...] = (NodeSlice("ray-head", 2),),
    chip: str = "ascend-910b",
    **extra: Any,
) -> LaunchRequest:
    return LaunchRequest(
        job_id="j1",
        attempt=1,
        tenant="acme",
        cluster="rc",
        command=command,
        placements=placements,
        env=(("MY_VAR", "x"),),
        chip=chip,
        connection=CONNECTION,
        **extra,
    )


def test_submit_names_the_run_quotes_the_argv_and_reserves_the_cards() -> None:
    ray = FakeRay()
    status = backend(ray).submit(request(("python", "train.py", "--lr", "0.1 x")))
    assert status.state is AttemptState.STARTING
    assert status.handle == {"cluster": "rc", "address": ADDRESS, "submission_id": "suanwang-j1-1"}
    (call,) = ray.submitted
    assert call["submission_id"] == "suanwang-j1-1"
    argv = confined(call["entrypoint"])
    assert argv[0] == BWRAP
    assert argv[argv.index("/usr/bin/env") :] == [
        "/usr/bin/env", "HOME=/job", "python", "train.py", "--lr", "0.1 x"
    ]  # fmt: skip
    assert call["entrypoint_resources"] == {"Ascend910B": 2.0}
    assert call["entrypoint_num_cpus"] == 0.0
    assert call["runtime_env"] == {
        "env_vars": {
            "MY_VAR": "x",
            "SUANWANG_JOB_ID": "j1",
            "SUANWANG_ATTEMPT": "1",
            "SUANWANG_CARDS": "2",
            "SUANWANG_RESUME_COUNT": "0",
        }
    }
    assert call["metadata"]["suanwang_job"] == "j1"


def test_cpu_slots_are_entrypoint_cpus() -> None:
    ray = FakeRay()
    backend(ray).submit(request(chip="cpu", placements=(NodeSlice("n", 3),)))
    (call,) = ray.submitted
    assert call["entrypoint_num_cpus"] == 3.0
    assert "entrypoint_resources" not in call


def test_no_platform_secret_reaches_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "SUANWANG_DATABASE_URL": "postgresql://op:pw@db/suanwang",
        "SUANWANG_CREDENTIALS_KEY": "k" * 44,
        "SUANWANG_API_KEY": "sw-operator-secret",
        "SUANWANG_OPERATOR_KEY": "sw-operator-secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    ray = FakeRay()
    backend(ray).submit(request())
    sent = json.dumps(ray.submitted)
    for name, value in secrets.items():
        assert name not in sent
        assert value not in sent
    assert set(ray.submitted[0]["runtime_env"]) == {"env_vars"}


@pytest.mark.parametrize("command", HOSTILE)
def test_hostile_command_text_stays_data(command: tuple[str, ...], tmp_path: Path) -> None:
    """Ray runs the entrypoint with a shell: each argument must reach the program whole."""
    probe = ("printf", "%s\\0", *command)
    entrypoint = render(request(probe)).entrypoint
    assert shlex.split(entrypoint) == list(probe)
    out = subprocess.run(
        ["/bin/sh", "-c", entrypoint], capture_output=True, cwd=tmp_path, check=True, timeout=10
    ).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in command]
    assert list(tmp_path.iterdir()) == []


def test_a_retried_submit_finds_the_run_and_never_submits_twice() -> None:
    ray = FakeRay()
    ray_backend = backend(ray)
    ray_backend.submit(request())
    ray.jobs["suanwang-j1-1"].status = "RUNNING"
    again = ray_backend.submit(request())
    assert again.state is AttemptState.RUNNING
    assert len(ray.submitted) == 1


def test_a_duplicate_refused_by_ray_is_the_earlier_run() -> None:
    """Another submit of the attempt got in between the lookup and this submit."""

    class Raced(FakeRay):
        looked = 0

        def get_job_info(self, job_id: str) -> Details:
            self.looked += 1
            if self.looked == 1:
                self.jobs[job_id] = Details(job_id, "RUNNING")  # the other submit lands now
                raise RuntimeError(f"Request failed with status code 404: Job {job_id} ...")
            return super().get_job_info(job_id)

    ray = Raced()
    status = backend(ray).submit(request())
    assert status.state is AttemptState.RUNNING
    assert ray.submitted == []


@pytest.mark.parametrize(
    ("ray_status", "exit_code", "state"),
    [
        ("PENDING", None, AttemptState.STARTING),
        ("RUNNING", None, AttemptState.RUNNING),
        ("SUCCEEDED", 0, AttemptState.SUCCEEDED),
        ("FAILED", 3, AttemptState.FAILED),
        ("STOPPED", None, AttemptState.CANCELLED),
    ],
)
def test_poll_maps_ray_states(ray_status: str, exit_code: int | None, state: AttemptState) -> None:
    ray = FakeRay()
    ray.jobs["suanwang-j1-1"] = Details(
        "suanwang-j1-1",
        ray_status,
        message="Job failed due to an application error, last available logs: boom",
        end_time=1_800_000_060_000 if state.ended else None,
        driver_exit_code=exit_code,
    )
    handle = {"address": ADDRESS, "submission_id": "suanwang-j1-1"}
    status = backend(ray).poll("j1", 1, handle)
    assert status.state is state
    assert status.exit_code == (exit_code if state.ended else None)
    if state is AttemptState.FAILED:
        assert "boom" in status.reason
    if state.ended:
        assert status.ended_at == 1_800_000_060.0
    assert status.started_at == (None if state is AttemptState.STARTING else 1_800_000_000.0)


def test_poll_of_an_id_ray_does_not_know_is_lost() -> None:
    status = backend(FakeRay()).poll(
        "j1", 1, {"address": ADDRESS, "submission_id": "suanwang-j1-1"}
    )
    assert status.state is AttemptState.LOST
    assert "no longer knows" in status.reason


def test_cancel_stops_the_job_and_ignores_unknown_ones() -> None:
    ray = FakeRay()
    ray_backend = backend(ray)
    ray_backend.submit(request())
    handle = {"address": ADDRESS, "submission_id": "suanwang-j1-1"}
    ray_backend.cancel("j1", 1, handle)
    assert ray.stopped == ["suanwang-j1-1"]
    assert ray_backend.poll("j1", 1, handle).state is AttemptState.CANCELLED
    ray_backend.cancel("j2", 1, {"address": ADDRESS})  # unknown: no error


def test_logs_are_sliced_by_offset_and_limit() -> None:
    ray = FakeRay()
    ray.jobs["suanwang-j1-1"] = Details("suanwang-j1-1", "RUNNING")
    ray.logs["suanwang-j1-1"] = "hello\nwörld\n"
    ray_backend = backend(ray)
    handle = {"address": ADDRESS, "submission_id": "suanwang-j1-1"}
    assert ray_backend.logs("j1", 1, handle, 0, 1 << 20) == "hello\nwörld\n".encode()
    assert ray_backend.logs("j1", 1, handle, 6, 3) == "wö".encode()
    assert ray_backend.logs("j9", 1, {"address": ADDRESS}, 0, 100) == b""


def test_an_unreachable_ray_raises_engine_unreachable_and_capacity_says_why() -> None:
    ray = FakeRay()
    ray.down = True
    ray_backend = backend(ray)
    with pytest.raises(EngineUnreachable, match="unreachable"):
        ray_backend.submit(request())
    with pytest.raises(EngineUnreachable):
        ray_backend.poll("j1", 1, {"address": ADDRESS})
    capacity = ray_backend.capacity("rc", CONNECTION)
    assert not capacity.healthy
    assert "ray dashboard at http://127.0.0.1:8265 is unreachable" in capacity.reason
    assert "Connection refused" in capacity.reason


def test_ray_going_down_after_the_client_was_built_is_unreachable_too() -> None:
    ray = FakeRay()
    ray_backend = backend(ray)
    ray_backend.submit(request())
    ray.down = True
    with pytest.raises(EngineUnreachable, match="unreachable"):
        ray_backend.poll("j1", 1, {"address": ADDRESS, "submission_id": "suanwang-j1-1"})
    ray.down = False
    assert ray_backend.poll("j1", 1, {"address": ADDRESS}).state is AttemptState.STARTING
    assert ray.built == [ADDRESS]  # one client per address


def test_capacity_lists_live_nodes_with_their_chip_resource() -> None:
    capacity = backend(FakeRay()).capacity("rc", CONNECTION)
    assert capacity.healthy, capacity.reason
    assert [(n.name, n.chip, n.cards) for n in capacity.nodes] == [
        ("ray-head", "ascend-910b", 8),
        ("ray-worker-1", "ascend-910b", 8),
    ]


def test_a_wrong_connection_is_unhealthy_not_an_error() -> None:
    capacity = backend(FakeRay()).capacity("rc", SlurmConnection(partition="p"))
    assert not capacity.healthy
    assert "needs a ray connection" in capacity.reason


def test_runs_lists_only_suanwang_jobs() -> None:
    ray = FakeRay()
    ray.jobs["suanwang-j1-1"] = Details("suanwang-j1-1", "RUNNING")
    ray.jobs["suanwang-j2-3"] = Details("suanwang-j2-3", "SUCCEEDED")
    runs = backend(ray).runs("rc", CONNECTION)
    assert [(r.job_id, r.attempt, r.alive) for r in runs] == [("j1", 1, True), ("j2", 3, False)]
    assert runs[0].handle == {"cluster": "rc", "address": ADDRESS, "submission_id": "suanwang-j1-1"}


def test_a_gang_is_one_job_whose_driver_holds_a_placement_group() -> None:
    ray = FakeRay()
    two = (NodeSlice("ray-head", 4), NodeSlice("ray-worker-1", 4))
    backend(ray).submit(request(("python", "-c", "print(1)"), placements=two))
    (call,) = ray.submitted
    argv = confined(call["entrypoint"])
    assert argv[:3] == ["python", "-m", "suanwang_ray_gang"]
    args = gang.parse_args(argv[3:])
    assert (args.nodes, args.resource, args.cards, args.strategy) == (
        2,
        "Ascend910B",
        4,
        "STRICT_SPREAD",
    )
    assert args.name == "suanwang-j1-1"
    assert args.command[0] == BWRAP  # each rank confined; the driver talks to Ray
    assert "--unshare-net" in args.command
    assert args.command[-3:] == ["python", "-c", "print(1)"]
    assert call["runtime_env"]["py_modules"] == [str(GANG_DRIVER)]
    assert "entrypoint_resources" not in call  # the bundles hold the cards
    packed = render(request(placements=two, gang=GangStrategy.PACK))
    assert "--strategy PACK" in packed.entrypoint


def test_the_gang_driver_bundles_and_rank_environment() -> None:
    assert gang.bundles(2, "Ascend910B", 4) == [{"Ascend910B": 4.0, "CPU": 1.0}] * 2
    assert gang.bundles(3, "CPU", 2) == [{"CPU": 2.0}] * 3
    assert gang.task_resources("Ascend910B", 4) == (1.0, {"Ascend910B": 4.0})
    env = gang.rank_env({"A": "1"}, 1, 2, "10.0.0.1")
    assert env == {
        "A": "1",
        "SUANWANG_NODE_RANK": "1",
        "SUANWANG_NODES": "2",
        "SUANWANG_MASTER_ADDR": "10.0.0.1",
    }
    with pytest.raises(SystemExit):
        gang.parse_args(["--name", "n", "--nodes", "2", "--resource", "R", "--cards", "1",
                         "--strategy", "SPREAD", "--", "true"])  # fmt: skip


def test_the_gang_driver_imports_only_the_standard_library() -> None:
    """It is shipped alone to Ray nodes where suanwang is not installed (``-S``: no
    site-packages, so no suanwang and no ray at import time)."""
    code = f"import sys; sys.path.insert(0, {str(GANG_DRIVER.parent)!r}); import suanwang_ray_gang"
    run = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, timeout=30)
    assert run.returncode == 0, run.stderr


def test_a_platform_engine_is_pinned_to_its_node_and_learns_its_address() -> None:
    ray = FakeRay()
    status = backend(ray).submit(request(workload=Workload.PLATFORM_ENGINE))
    (call,) = ray.submitted
    head = next(n for n in NODES["data"]["result"]["result"] if n["node_name"] == "ray-head")
    assert call["entrypoint_label_selector"] == {"ray.io/node-id": head["node_id"]}
    assert call["runtime_env"]["env_vars"]["SUANWANG_NODE_ADDRESS"] == head["node_ip"]
    assert (status.handle["node"], status.handle["host"]) == ("ray-head", head["node_ip"])
    with pytest.raises(EngineUnreachable, match="no live node 'gone'"):
        backend(ray).submit(
            request(workload=Workload.PLATFORM_ENGINE, placements=(NodeSlice("gone", 1),))
        )


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"network": JobNetwork.GATEWAY}, "network 'gateway' is not available on Ray"),
        ({"working_dir": "sub"}, "working_dir is not available on Ray"),
        ({"working_dir": "/etc"}, "working_dir"),
        ({"chip": "no-such-chip"}, "has no engine resource names"),
    ],
)
def test_what_ray_cannot_run_fails_with_the_reason(extra: dict[str, Any], reason: str) -> None:
    ray = FakeRay()
    status = backend(ray).submit(request(**extra))
    assert status.state is AttemptState.FAILED
    assert reason in status.reason
    assert ray.submitted == []


def test_an_attempt_never_submitted_has_no_logs_and_polls_lost() -> None:
    ray = FakeRay()
    ray_backend = backend(ray)
    assert ray_backend.logs("j1", 1, {}, 0, 100) == b""
    ray_backend.cancel("j1", 1, {})
    assert ray_backend.poll("j1", 1, {}).state is AttemptState.LOST
    assert ray.built == []  # nothing asked Ray


def test_gang_is_a_job_field_checked_at_the_edge_and_stored_only_when_asked() -> None:
    with pytest.raises(Invalid) as caught:
        JobCreate.model_validate({"command": ["x"], "gang": "diagonal"})
    assert caught.value.errors()[0]["loc"] == ("gang",)
    packed = JobCreate.model_validate({"command": ["x"], "gang": "pack"}).to_spec()
    assert packed.gang is GangStrategy.PACK
    assert spec_from_dict(spec_to_dict(packed)) == packed
    plain = JobCreate.model_validate({"command": ["x"]}).to_spec()
    assert "gang" not in spec_to_dict(plain)  # specs stored before the field hash the same
    assert spec_from_dict(spec_to_dict(plain)).gang is GangStrategy.SPREAD


def test_every_request_of_the_ray_client_has_a_timeout() -> None:
    class Client:
        """Ray's JobSubmissionClient sends every request through ``_do_request``."""

        def __init__(self, address: str) -> None:
            self.sent: list[dict[str, Any]] = []
            self._do_request("GET", "/api/version")

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            self.sent.append({"endpoint": endpoint, **kwargs})

    client: Any = bounded(Client)(ADDRESS)
    client._do_request("POST", "/api/jobs/", json_data={})
    assert [s["timeout"] for s in client.sent] == [TIMEOUT_S, TIMEOUT_S]


def test_nodes_sharing_a_name_cpu_nodes_and_unreadable_answers() -> None:
    nodes = [
        RayNode("aaaaaaaaaaaaaaaa1", "10.0.0.5", "10.0.0.5", True, {"H100": 8.0, "CPU": 64.0}),
        RayNode("bbbbbbbbbbbbbbbb2", "10.0.0.5", "10.0.0.5", True, {"H100": 4.0}),
        RayNode("ccccccccccccccccc", "head", "10.0.0.1", True, {"CPU": 16.0, "memory": 1e9}),
        RayNode("ddddddddddddddddd", "empty", "10.0.0.2", True, {"memory": 1e9}),
        RayNode("eeeeeeeeeeeeeeeee", "dead", "10.0.0.3", False, {"H100": 8.0}),
    ]
    assert [(n.name, n.chip, n.cards) for n in capacity_of(nodes).nodes] == [
        ("10.0.0.5-aaaaaaaaaaaa", "nvidia-h100", 8),
        ("10.0.0.5-bbbbbbbbbbbb", "nvidia-h100", 4),
        ("head", "cpu", 16),
    ]
    ray = FakeRay()
    ray_backend = RayBackend(
        FakeClock(), Settings(data_dir=Path("/nonexistent")), client_factory=ray.factory,
        fetch=lambda url: {"data": {"unexpected": []}},
    )  # fmt: skip
    capacity = ray_backend.capacity("rc", CONNECTION)
    assert not capacity.healthy
    assert "node list is not readable" in capacity.reason


def test_a_tenant_job_is_confined_without_network_and_a_platform_engine_is_not() -> None:
    ray = FakeRay()
    backend(ray).submit(request(("sh", "-c", "nc -l 8080")))
    engine_job = request(("llama-server",), workload=Workload.PLATFORM_ENGINE)
    backend(ray).submit(dataclasses.replace(engine_job, job_id="j2"))
    tenant, engine = (call["entrypoint"] for call in ray.submitted)
    argv = confined(tenant)
    bwrap = argv[: argv.index("/usr/bin/env")]
    assert {"--unshare-net", "--unshare-pid", "--die-with-parent"} <= set(bwrap)
    assert "--share-net" not in bwrap
    binds = [bwrap[i + 1] for i, a in enumerate(bwrap) if a in ("--bind", "--ro-bind")]
    assert binds  # only system directories, read-only: nothing of the data dir or Ray's
    assert set(binds) <= {"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64"}, binds
    assert all(a != "--bind" for a in bwrap)
    assert bwrap[bwrap.index("--tmpfs", bwrap.index("/dev/shm")) + 1] == "/job"
    assert bwrap[bwrap.index("--chdir") + 1] == "/job"
    assert engine == "llama-server"  # keeps the node's network to serve on its port


@pytest.mark.parametrize("command", HOSTILE)
def test_hostile_text_stays_data_inside_the_sandbox(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """The confined entrypoint through a real shell: a stand-in bwrap drops its own options
    and runs the rest, so every tenant argument must arrive whole after two quotings."""
    fake = tmp_path / "bwrap"
    fake.write_text('#!/bin/sh\nwhile [ "$1" != /usr/bin/env ]; do shift; done\nexec "$@"\n')
    fake.chmod(0o755)
    probe = ("printf", "%s\\0", *command)
    entrypoint = render(request(probe), confine=Confine(str(fake), LAYOUT)).entrypoint
    work = tmp_path / "cwd"
    work.mkdir()
    out = subprocess.run(
        ["/bin/sh", "-c", entrypoint], capture_output=True, cwd=work, check=True, timeout=10
    ).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in command]
    assert list(work.iterdir()) == []


def test_no_bwrap_on_the_node_fails_the_job_unless_single_user_dev(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-bwrap")
    job = request(("echo", "ran"))
    strict = render(job, confine=Confine(missing, LAYOUT)).entrypoint
    run = subprocess.run(["/bin/sh", "-c", strict], capture_output=True, text=True, timeout=10)
    assert run.returncode == 127
    assert run.stdout == ""
    assert f"bubblewrap ({missing}) not found on this Ray node" in run.stderr
    dev = render(job, confine=Confine(missing, LAYOUT, required=False)).entrypoint
    run = subprocess.run(["/bin/sh", "-c", dev], capture_output=True, text=True, timeout=10)
    assert (run.returncode, run.stdout) == (0, "ran\n")
    assert "running unconfined (single-user-dev)" in run.stderr
    ray = FakeRay()
    backend(ray, isolation="single-user-dev").submit(job)
    assert "running unconfined" in ray.submitted[0]["entrypoint"]


def test_the_fleet_blocks_bwrap_is_used_on_the_nodes() -> None:
    ray = FakeRay()
    connection = RayConnection(address=ADDRESS, bwrap="/opt/bw/bin/bwrap")
    backend(ray).submit(dataclasses.replace(request(), connection=connection))
    assert confined(ray.submitted[0]["entrypoint"], "/opt/bw/bin/bwrap")[0] == "/opt/bw/bin/bwrap"


def test_a_gang_rank_whose_program_is_missing_exits_127(capsys: pytest.CaptureFixture[str]) -> None:
    assert gang.run_rank(["/nonexistent/bwrap", "true"], {}) == 127
    assert "/nonexistent/bwrap not found on this node" in capsys.readouterr().out
