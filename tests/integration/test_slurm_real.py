"""SlurmBackend against the real one-node Slurm cluster (tests/integration/slurm_cluster.py).

Runs as in production: sandbox mode, ``sbatch`` as root with ``--uid`` of the tenant, the
run in bubblewrap on the node. Scenarios: run and logs, identity and hostile commands,
another tenant's files, cancel, requeue of a preemptible job, a retried submit, capacity,
a missing partition. The server-level scenarios are in test_slurm_live.py.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import CHIP, PARTITION, TENANT_UIDS, SlurmCluster

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.slurm import SlurmBackend
from suanwang.config import Settings
from suanwang.domain.connections import SlurmConnection, SlurmTenant
from suanwang.domain.jobs import AttemptState
from suanwang.ports import Handle, LaunchRequest, NodeSlice, RunStatus

UIDS = {"acme": TENANT_UIDS[0], "beta": TENANT_UIDS[1]}


class FixedUids:
    def uid_for(self, tenant: str) -> int:
        return UIDS[tenant]


@pytest.fixture
def base() -> Iterator[Path]:
    """A world-traversable directory holding the data dir (0700) and the spool beside it."""
    path = Path(tempfile.mkdtemp(prefix="suanwang-slurm-test-"))
    path.chmod(0o755)
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster, base: Path) -> SlurmBackend:
    data = base / "data"
    data.mkdir(mode=0o700)
    (data / "operator.key").write_text("sw_operator_secret\n")
    (data / "operator.key").chmod(0o600)
    (data / "suanwang.db").write_text("database rows\n")
    settings = Settings(data_dir=data, local_isolation="sandbox")
    return SlurmBackend(SystemClock(), settings, tenant_uids=FixedUids())


def connection(cluster: SlurmCluster, partition: str = PARTITION) -> SlurmConnection:
    return SlurmConnection(partition=partition, bin_dir=str(cluster.bin_dir))


def request(cluster: SlurmCluster, job_id: str, *command: str, **changes: object) -> LaunchRequest:
    fields: dict[str, object] = {
        "job_id": job_id,
        "attempt": 1,
        "tenant": "acme",
        "cluster": "hpc",
        "command": command,
        "placements": (NodeSlice(cluster.node, 1),),
        "connection": connection(cluster),
        "chip": CHIP,
        "preemptible": False,
        "max_runtime_s": 300,
    }
    fields.update(changes)
    return LaunchRequest(**fields)  # type: ignore[arg-type]


def wait(
    slurm: SlurmBackend, job_id: str, handle: Handle, *, until: str = "ended", timeout: float = 30
) -> RunStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = slurm.poll(job_id, 1, handle)
        if status.state.ended if until == "ended" else status.state.value == until:
            return status
        assert time.monotonic() < deadline, f"{job_id}: still {status.state} ({status.reason})"
        time.sleep(0.2)


def output(slurm: SlurmBackend, job_id: str, attempt: int = 1) -> str:
    return slurm.logs(job_id, attempt, {}, 0, 1 << 20).decode(errors="replace")


def test_a_job_runs_as_the_tenant_and_its_output_comes_back(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    started = slurm.submit(
        request(slurm_cluster, "run1", "sh", "-c", "id -u; echo hello; pwd; echo $HOME")
    )
    assert started.state is AttemptState.STARTING
    ended = wait(slurm, "run1", started.handle)
    assert (ended.state, ended.exit_code) == (AttemptState.SUCCEEDED, 0), output(slurm, "run1")
    assert output(slurm, "run1").split() == [str(UIDS["acme"]), "hello", "/job", "/job"]
    assert ended.started_at is not None
    assert ended.ended_at is not None


def test_hostile_command_text_cannot_change_the_directives(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    evil = "x\n#SBATCH --partition=vip\n#SBATCH --uid=0\n'; id -u; echo '$(id -u)"
    started = slurm.submit(request(slurm_cluster, "evil1", "printf", "%s|", evil, "--uid=0"))
    ended = wait(slurm, "evil1", started.handle)
    assert ended.state is AttemptState.SUCCEEDED
    assert output(slurm, "evil1") == f"{evil}|--uid=0|"
    job = slurm_cluster.run("scontrol", "show", "job", str(started.handle["slurm_job_id"]))
    assert f"Partition={PARTITION} " in job
    assert f"UserId=suanwang-{UIDS['acme']}(" in job


def test_a_job_cannot_read_the_platform_or_another_tenants_files(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster, base: Path
) -> None:
    """Tenant acme leaves a secret in its directory and its output; tenant beta's job tries
    those, the operator key, the SQLite database and PostgreSQL on 127.0.0.1."""
    a = slurm.submit(
        request(slurm_cluster, "own1", "sh", "-c", "echo acme-secret >/job/s; echo acme-secret")
    )
    assert wait(slurm, "own1", a.handle).state is AttemptState.SUCCEEDED
    spool = base / "data-slurm"
    targets = [
        spool / "own1" / "1.log",
        spool / "own1" / "work" / "s",
        base / "data" / "operator.key",
        base / "data" / "suanwang.db",
    ]
    probe = "; ".join(f"cat {t} 2>&1" for t in targets)
    probe += "; ls /job/.. 2>&1; (exec 3<>/dev/tcp/127.0.0.1/5432) 2>&1 || echo no-network"
    b = slurm.submit(request(slurm_cluster, "thief1", "bash", "-c", probe, tenant="beta"))
    wait(slurm, "thief1", b.handle)
    seen = output(slurm, "thief1")
    assert "acme-secret" not in seen
    assert "sw_operator_secret" not in seen
    assert "rows" not in seen
    assert seen.count("No such file or directory") + seen.count("Permission denied") >= 4, seen
    assert "no-network" in seen


def test_cancel_stops_a_running_job(slurm: SlurmBackend, slurm_cluster: SlurmCluster) -> None:
    started = slurm.submit(request(slurm_cluster, "long1", "sleep", "120"))
    wait(slurm, "long1", started.handle, until="running")
    slurm.cancel("long1", 1, started.handle)
    ended = wait(slurm, "long1", started.handle)
    assert ended.state is AttemptState.CANCELLED
    slurm.cancel("long1", 1, started.handle)  # idempotent


def test_a_preemptible_job_is_requeued_by_slurm_and_runs_again(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    script = (
        'echo "run ${SLURM_RESTART_COUNT:-0}"; [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] || sleep 60'
    )
    started = slurm.submit(request(slurm_cluster, "pre1", "sh", "-c", script, preemptible=True))
    wait(slurm, "pre1", started.handle, until="running")
    slurm_id = str(started.handle["slurm_job_id"])
    deadline = time.monotonic() + 10
    while "run" not in output(slurm, "pre1"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    slurm_cluster.run("scontrol", "requeue", slurm_id)
    requeued = wait(slurm, "pre1", started.handle, until="starting")
    assert "requeue" in requeued.reason
    release(slurm_cluster, slurm_id)
    ended = wait(slurm, "pre1", started.handle)
    assert ended.state is AttemptState.SUCCEEDED
    assert "requeue" in ended.reason
    runs = [line for line in output(slurm, "pre1").splitlines() if line.startswith("run")]
    assert runs == ["run 0", "run 1"]  # --open-mode=append keeps both runs' output


def release(cluster: SlurmCluster, slurm_id: str) -> None:
    """Start a requeued job now (Slurm holds it for 2 min: ``BeginTime``)."""
    deadline = time.monotonic() + 10
    while "BeginTime" in cluster.run("squeue", "-h", "-j", slurm_id, "-o", "%r"):
        cluster.run("scontrol", "update", f"JobId={slurm_id}", "StartTime=now")
        assert time.monotonic() < deadline, "the requeued job was not released"
        time.sleep(0.2)


def test_a_retried_submit_never_submits_twice(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster, base: Path
) -> None:
    first = slurm.submit(request(slurm_cluster, "once1", "sleep", "2"))
    (base / "data-slurm" / "once1" / "1.id").unlink()  # as if the control plane died here
    again = slurm.submit(request(slurm_cluster, "once1", "sleep", "2"))
    assert again.handle["slurm_job_id"] == first.handle["slurm_job_id"]
    assert len(slurm_cluster.job_ids("suanwang-once1-")) == 1
    assert wait(slurm, "once1", first.handle).state is AttemptState.SUCCEEDED


def test_a_tenants_job_is_charged_to_its_own_account_and_qos(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    """slurmctld records the mapped account on the tenant's job and another tenant's job
    keeps the block's (none here). The QoS is accepted but, without accounting storage on
    the test cluster, shown as ``(null)``: its ``--qos`` is checked in the unit tests."""
    mapped = SlurmConnection(
        partition=PARTITION,
        bin_dir=str(slurm_cluster.bin_dir),
        tenants=(SlurmTenant("acme", account="acme-ai", qos="high"),),
    )
    charged: dict[str, dict[str, str]] = {}
    for tenant in ("acme", "beta"):
        job_id = f"acct-{tenant}"
        started = slurm.submit(
            request(slurm_cluster, job_id, "true", tenant=tenant, connection=mapped)
        )
        assert started.state is AttemptState.STARTING, started.reason
        shown = slurm_cluster.run("scontrol", "show", "job", str(started.handle["slurm_job_id"]))
        charged[tenant] = {
            w.split("=", 1)[0]: w.split("=", 1)[1] for w in shown.split() if "=" in w
        }
        assert wait(slurm, job_id, started.handle).state is AttemptState.SUCCEEDED
    assert charged["acme"]["Account"] == "acme-ai"
    assert charged["beta"]["Account"] != "acme-ai"


def test_capacity_and_a_missing_partition(slurm: SlurmBackend, slurm_cluster: SlurmCluster) -> None:
    capacity = slurm.capacity("hpc", connection(slurm_cluster))
    assert capacity.healthy, capacity.reason
    assert [(n.name, n.chip, n.cards) for n in capacity.nodes] == [(slurm_cluster.node, CHIP, 8)]
    missing = slurm.capacity("hpc", connection(slurm_cluster, "nosuch"))
    assert not missing.healthy
    assert "partition 'nosuch' not found" in missing.reason


def test_runs_lists_the_jobs_suanwang_started(
    slurm: SlurmBackend, slurm_cluster: SlurmCluster
) -> None:
    started = slurm.submit(request(slurm_cluster, "listed1", "sleep", "60", attempt=3))
    slurm_cluster.run("sbatch", "--job-name=someone-else", "-o", "/dev/null", "--wrap", "sleep 1")
    runs = {(r.job_id, r.attempt): r for r in slurm.runs("hpc", connection(slurm_cluster))}
    assert runs[("listed1", 3)].alive
    assert runs[("listed1", 3)].handle["slurm_job_id"] == started.handle["slurm_job_id"]
    slurm.cancel("listed1", 3, started.handle)
