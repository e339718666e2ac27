"""SlurmBackend against recorded Slurm 22.05 outputs (a fake runner; no Slurm needed).

The recordings in tests/data/slurm/ come from the test cluster of
tests/integration/slurm_cluster.py: ``squeue --json`` with a failed (exit 3), a requeued
(pending, ``BeginTime``), a cancelled, a running, a signalled and a completed job;
``sinfo --json`` with the node healthy and drained; the ``sacct --completion`` log.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

import suanwang
from suanwang.adapters.backends.sandbox import HostFacts
from suanwang.adapters.backends.slurm import SlurmBackend
from suanwang.adapters.backends.slurm_cli import Completed, SlurmCommandError, SlurmUnreachable
from suanwang.config import Settings
from suanwang.domain.connections import RayConnection, SlurmConnection
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import JobNetwork, Workload
from suanwang.ports import EngineUnreachable, LaunchRequest, NodeSlice

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
SQUEUE = (DATA / "squeue-22.05.json").read_text()
SINFO = (DATA / "sinfo-22.05.json").read_text()
SINFO_DRAINED = (DATA / "sinfo-drained-22.05.json").read_text()
SACCT = (DATA / "sacct-completion-22.05.txt").read_text()
CONNECTION = SlurmConnection(partition="debug", account="acct1", qos="normal", bin_dir="/opt/s")


class FakeClock:
    def now(self) -> float:
        return 1_800_000_000.0


class FakeSlurm:
    """Answers each Slurm program from a table; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.answers: dict[str, Completed | Exception] = {
            "squeue": Completed(0, SQUEUE, ""),
            "sinfo": Completed(0, SINFO, ""),
            "sacct": Completed(0, SACCT, ""),
            "sbatch": Completed(0, "42\n", ""),
            "scancel": Completed(0, "", ""),
        }

    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed:
        self.calls.append(list(argv))
        answer = self.answers[Path(argv[0]).name]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def called(self, program: str) -> list[list[str]]:
        return [c for c in self.calls if Path(c[0]).name == program]


class Uids:
    def uid_for(self, tenant: str) -> int:
        return {"acme": 151000, "beta": 151001}[tenant]


def host(euid: int = 0, bwrap: str | None = "/usr/bin/bwrap") -> HostFacts:
    return HostFacts(euid, -1, bwrap, "/usr/bin/setpriv", "/usr/bin/env", True)


def backend(
    tmp_path: Path, fake: FakeSlurm, *, sandbox: bool = False, euid: int = 0
) -> SlurmBackend:
    settings = Settings(
        data_dir=tmp_path / "data",
        slurm_spool_dir=tmp_path / "spool",
        local_isolation="sandbox" if sandbox else "single-user-dev",
    )
    return SlurmBackend(
        FakeClock(), settings, tenant_uids=Uids(), runner=fake, host=host(euid=euid)
    )


def request(**changes: object) -> LaunchRequest:
    base: dict[str, object] = {
        "job_id": "j1",
        "attempt": 1,
        "tenant": "acme",
        "cluster": "hpc",
        "command": ("python", "-c", "print(1)"),
        "placements": (NodeSlice("vm", 2),),
        "max_runtime_s": 125,
        "connection": CONNECTION,
        "chip": "ascend-910b",
        "preemptible": True,
    }
    base.update(changes)
    return LaunchRequest(**base)  # type: ignore[arg-type]


def option(argv: list[str], name: str) -> str | None:
    found = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return found[0] if found else None


# --- submit ---------------------------------------------------------------------------------
def test_submit_renders_the_directives_and_keeps_the_job_id(tmp_path: Path) -> None:
    fake = FakeSlurm()
    status = backend(tmp_path, fake).submit(request())
    (argv,) = fake.called("sbatch")
    assert argv[0] == "/opt/s/sbatch"
    assert option(argv, "job-name") == "suanwang-j1-1"
    assert option(argv, "gres") == "ascend910b:2"
    assert option(argv, "nodes") == "1"
    assert option(argv, "nodelist") == "vm"
    assert option(argv, "time") == "3"  # 125 s, rounded up to whole minutes
    assert (option(argv, "partition"), option(argv, "account"), option(argv, "qos")) == (
        "debug",
        "acct1",
        "normal",
    )
    assert "--requeue" in argv
    assert "--export=NONE" in argv
    assert "--parsable" in argv
    assert option(argv, "output") == str(tmp_path / "spool" / "j1" / "1.log")
    assert status.state is AttemptState.STARTING
    assert status.handle["slurm_job_id"] == 42
    assert status.handle["bin_dir"] == "/opt/s"


def test_a_job_that_is_not_preemptible_is_not_requeued_and_cpu_uses_cpus(tmp_path: Path) -> None:
    fake = FakeSlurm()
    backend(tmp_path, fake).submit(request(preemptible=False, chip="cpu", max_runtime_s=None))
    (argv,) = fake.called("sbatch")
    assert "--no-requeue" in argv
    assert "--requeue" not in argv
    assert option(argv, "gres") is None
    assert option(argv, "cpus-per-task") == "2"
    assert option(argv, "time") is None


def test_a_retried_submit_finds_the_job_instead_of_submitting_twice(tmp_path: Path) -> None:
    fake = FakeSlurm()
    slurm = backend(tmp_path, fake)
    slurm.submit(request())
    again = slurm.submit(request())
    assert len(fake.called("sbatch")) == 1
    assert again.handle["slurm_job_id"] == 42


def test_a_submit_lost_before_its_id_was_recorded_is_found_by_name(tmp_path: Path) -> None:
    """The control plane died after sbatch answered: the id file is missing, the name is
    in squeue (job 4 of the recording is suanwang-jpend-1, running)."""
    fake = FakeSlurm()
    slurm = backend(tmp_path, fake)
    (tmp_path / "spool" / "jpend").mkdir(parents=True)
    found = slurm.submit(request(job_id="jpend"))
    assert fake.called("sbatch") == []
    assert found.handle["slurm_job_id"] == 4
    assert found.state is AttemptState.RUNNING


def test_sbatch_refusing_fails_the_attempt_with_its_message(tmp_path: Path) -> None:
    fake = FakeSlurm()
    fake.answers["sbatch"] = Completed(1, "", "sbatch: error: invalid partition specified: gone\n")
    status = backend(tmp_path, fake).submit(request())
    assert status.state is AttemptState.FAILED
    assert "invalid partition specified: gone" in status.reason


def test_gateway_network_is_refused_on_slurm(tmp_path: Path) -> None:
    fake = FakeSlurm()
    status = backend(tmp_path, fake).submit(request(network=JobNetwork.GATEWAY))
    assert status.state is AttemptState.FAILED
    assert "gateway" in status.reason
    assert fake.called("sbatch") == []


def test_a_cluster_without_a_slurm_connection_is_a_wiring_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slurm connection"):
        backend(tmp_path, FakeSlurm()).submit(request(connection=RayConnection("http://x")))


@pytest.mark.skipif(os.geteuid() != 0, reason="chowning the job's directory needs root")
def test_sandbox_mode_submits_as_the_tenant_uid_inside_bubblewrap(tmp_path: Path) -> None:
    fake = FakeSlurm()
    backend(tmp_path, fake, sandbox=True).submit(request())
    (argv,) = fake.called("sbatch")
    assert (option(argv, "uid"), option(argv, "gid")) == ("151000", "151000")
    script = argv.index(str(tmp_path / "spool" / "j1" / "batch.sh"))
    run = argv[script + 1 :]
    assert run[0] == "/usr/bin/bwrap"
    assert "--unshare-net" in run
    assert run[-3:] == ["python", "-c", "print(1)"]
    code = str(Path(suanwang.__file__).resolve().parents[1])  # job programs run from it
    binds = [run[i + 1] for i, arg in enumerate(run) if arg == "--ro-bind"]
    assert code in binds
    assert f"PYTHONPATH={code}" in run
    work = tmp_path / "spool" / "j1" / "work"
    assert (work.stat().st_uid, oct(work.stat().st_mode & 0o777)) == (151000, "0o700")
    log = tmp_path / "spool" / "j1" / "1.log"
    assert (log.stat().st_uid, oct(log.stat().st_mode & 0o777)) == (151000, "0o600")


def test_sandbox_mode_needs_root(tmp_path: Path) -> None:
    slurm = backend(tmp_path, FakeSlurm(), sandbox=True, euid=1000)
    refusal = slurm.refusal(Workload.TENANT_JOB)
    assert refusal is not None
    assert "sbatch --uid needs root" in refusal


# --- poll, cancel, logs ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("slurm_id", "state", "exit_code", "reason"),
    [
        (1, AttemptState.FAILED, 3, "FAILED"),
        (2, AttemptState.STARTING, None, "after 1 requeue"),
        (3, AttemptState.CANCELLED, None, "CANCELLED"),
        (4, AttemptState.RUNNING, None, ""),
        (6, AttemptState.SUCCEEDED, 0, "COMPLETED"),
    ],
)
def test_poll_maps_slurm_states(
    tmp_path: Path, slurm_id: int, state: AttemptState, exit_code: int | None, reason: str
) -> None:
    status = backend(tmp_path, FakeSlurm()).poll("j", 1, {"slurm_job_id": slurm_id})
    assert (status.state, status.exit_code) == (state, exit_code)
    assert reason in status.reason
    assert status.handle["slurm_job_id"] == slurm_id
    if state is AttemptState.STARTING:
        assert status.started_at is None  # a pending job's start time is Slurm's estimate


def test_poll_reads_the_completion_log_for_forgotten_jobs(tmp_path: Path) -> None:
    fake = FakeSlurm()
    fake.answers["squeue"] = Completed(0, '{"jobs": [], "errors": []}', "")
    slurm = backend(tmp_path, fake)
    assert slurm.poll("j", 1, {"slurm_job_id": 6}).state is AttemptState.SUCCEEDED
    fake.answers["sacct"] = Completed(0, "", "")
    lost = slurm.poll("j", 1, {"slurm_job_id": 77})
    assert lost.state is AttemptState.LOST
    assert "no longer knows job 77" in lost.reason


def test_an_unreachable_slurmctld_is_an_unknown_outcome_not_a_failure(tmp_path: Path) -> None:
    """Poll, submit and cancel raise EngineUnreachable: the control loop asks again later."""
    fake = FakeSlurm()
    fake.answers["squeue"] = SlurmUnreachable("squeue did not answer within 15 s")
    slurm = backend(tmp_path, fake)
    with pytest.raises(EngineUnreachable, match="did not answer"):
        slurm.poll("j", 1, {"slurm_job_id": 4})
    refused = "sbatch: error: Batch job submission failed: Unable to contact slurm controller"
    fake.answers["sbatch"] = Completed(1, "", refused)
    with pytest.raises(EngineUnreachable, match="Unable to contact"):
        slurm.submit(request())
    fake.answers["squeue"] = Completed(0, SQUEUE, "")
    fake.answers["scancel"] = Completed(1, "", "scancel: error: Socket timed out on send/recv")
    with pytest.raises(EngineUnreachable):
        slurm.cancel("j", 1, {"slurm_job_id": 4})


def test_one_squeue_serves_the_polls_of_a_tick(tmp_path: Path) -> None:
    fake = FakeSlurm()
    slurm = backend(tmp_path, fake)
    for slurm_id in (1, 2, 3, 4, 6, 1, 2):
        slurm.poll("j", 1, {"slurm_job_id": slurm_id})
    assert len(fake.called("squeue")) == 1


def test_cancel_by_id_and_by_name(tmp_path: Path) -> None:
    fake = FakeSlurm()
    slurm = backend(tmp_path, fake)
    slurm.cancel("j1", 1, {"slurm_job_id": 42, "bin_dir": "/opt/s"})
    slurm.cancel("j2", 3, {})
    assert [c[1:] for c in fake.called("scancel")] == [["42"], ["--name=suanwang-j2-3"]]


def test_cancelling_an_ended_job_is_a_no_op_and_other_errors_raise(tmp_path: Path) -> None:
    fake = FakeSlurm()
    fake.answers["scancel"] = Completed(
        1, "", "scancel: error: Kill job error on job id 3: Job/step already completed"
    )
    slurm = backend(tmp_path, fake)
    slurm.cancel("j", 1, {"slurm_job_id": 3})
    fake.answers["scancel"] = Completed(1, "", "scancel: error: Access/permission denied")
    with pytest.raises(SlurmCommandError, match="permission denied"):
        slurm.cancel("j", 1, {"slurm_job_id": 3})


def test_logs_read_the_output_file_and_never_follow_a_symlink(tmp_path: Path) -> None:
    fake = FakeSlurm()
    slurm = backend(tmp_path, fake)
    slurm.submit(request())
    (tmp_path / "spool" / "j1" / "1.log").write_bytes(b"hello from slurm\n")
    assert slurm.logs("j1", 1, {}, 6, 4) == b"from"
    assert slurm.logs("j1", 1, {}, 1000, 4) == b""
    secret = tmp_path / "secret"
    secret.write_text("operator key")
    (tmp_path / "spool" / "j1" / "1.log").unlink()
    (tmp_path / "spool" / "j1" / "1.log").symlink_to(secret)
    with pytest.raises(OSError, match="levels of symbolic links"):
        slurm.logs("j1", 1, {}, 0, 100)


# --- capacity and runs ----------------------------------------------------------------------
def test_capacity_maps_gres_to_chips(tmp_path: Path) -> None:
    capacity = backend(tmp_path, FakeSlurm()).capacity("hpc", CONNECTION)
    assert capacity.healthy
    assert capacity.reason == ""
    assert [(n.name, n.chip, n.cards) for n in capacity.nodes] == [("vm", "ascend-910b", 8)]


@pytest.mark.parametrize(
    ("answer", "connection", "reason"),
    [
        (Completed(0, SINFO, ""), SlurmConnection("gone"), "partition 'gone' not found"),
        (Completed(0, SINFO_DRAINED, ""), CONNECTION, "vm=mixed+drain"),
        (SlurmUnreachable("sinfo did not answer within 15 s"), CONNECTION, "unreachable"),
        (
            Completed(1, "", "sinfo: error: Unable to contact slurm controller"),
            CONNECTION,
            "controller",
        ),
        (Completed(0, "not json", ""), CONNECTION, "invalid JSON"),
    ],
)
def test_capacity_is_unhealthy_with_the_reason(
    tmp_path: Path, answer: Completed | Exception, connection: SlurmConnection, reason: str
) -> None:
    fake = FakeSlurm()
    fake.answers["sinfo"] = answer
    capacity = backend(tmp_path, fake).capacity("hpc", connection)
    assert not capacity.healthy
    assert reason in capacity.reason


def test_runs_lists_suanwang_jobs_of_the_partition(tmp_path: Path) -> None:
    runs = backend(tmp_path, FakeSlurm()).runs("hpc", CONNECTION)
    found = {(r.job_id, r.attempt, r.alive, r.handle["slurm_job_id"]) for r in runs}
    assert found == {
        ("jdone", 1, False, 1),
        ("jrun", 1, True, 2),
        ("jcan", 2, False, 3),
        ("jpend", 1, True, 4),
        ("jok", 1, False, 6),
    }
    assert backend(tmp_path, FakeSlurm()).runs("hpc", SlurmConnection("other")) == []


def test_an_engine_learns_the_address_of_the_node_it_is_placed_on(tmp_path: Path) -> None:
    """A platform engine listens on, and is reached at, the NodeAddr slurmctld reports for
    the node suanwang pinned it to (127.0.0.1 in the recording), never an address it chose."""
    fake = FakeSlurm()
    status = backend(tmp_path, fake).submit(request(workload=Workload.PLATFORM_ENGINE))
    assert (status.handle["node"], status.handle["host"]) == ("vm", "127.0.0.1")
    (argv,) = fake.called("sbatch")
    assert "SUANWANG_NODE_ADDRESS=127.0.0.1" in argv
    tenant = FakeSlurm()
    plain = backend(tmp_path / "t", tenant).submit(request(job_id="j2"))
    assert "host" not in plain.handle
    assert "node" not in plain.handle
    assert tenant.called("sinfo") == []
