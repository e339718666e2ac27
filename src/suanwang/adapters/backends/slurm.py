"""Slurm backend: each attempt is one batch job submitted with ``sbatch``.

- **submit** renders the ``sbatch`` options from the request and the cluster's
  :class:`~suanwang.domain.connections.SlurmConnection` (``slurm_script.py``): job name
  ``suanwang-<job>-<attempt>``, ``--nodes``/``--nodelist`` as placed, ``--gres=<gres>:<n>``
  from the chip (``--cpus-per-task`` for cpu slots), ``--time`` from the maximum runtime,
  ``--requeue`` for preemptible work, partition, account and QoS (the tenant's own from the
  block's ``tenants:`` for its jobs, the block's for platform engines), output appended to a file
  suanwang reads (``slurm_files.py``). The Slurm job id goes into the handle (stored by the
  control loop) and into ``<attempt>.id``; a retried submit finds the job by that file or
  by its name in ``squeue`` and never submits twice.
- **poll** reads one ``squeue --json`` snapshot (shared by the polls of one tick), and the
  completion log (``sacct --completion``) for jobs slurmctld has forgotten. While
  slurmctld does not answer, poll (and submit, cancel) raise
  :class:`~suanwang.ports.EngineUnreachable`: the control loop asks again later, never
  failing the run for it, and the cluster shows unhealthy (:meth:`capacity`).
- **cancel** is ``scancel``; **logs** read the output file; **capacity** is ``sinfo
  --json`` (usable nodes of the partition, GRES counts mapped back to chips); **runs** are
  the jobs named ``suanwang-…`` in the partitions suanwang submits to.

Isolation (sandbox mode): ``sbatch`` runs as root with ``--uid``/``--gid`` set to the
tenant's uid from :class:`~suanwang.ports.TenantUids` (platform engines: the engine uid);
Slurm must resolve it (a passwd and group entry of that number on every node) and the run
is wrapped in bubblewrap on the node (``slurm_script.py``). ``--export=NONE`` keeps the
control plane's environment out of the job. A job's dataset replica is bound read-only at
``/data/input`` by that unprivileged bubblewrap, so before submitting the backend gives the
tenant's uid search on its own tenant's dataset directories and checks that the uid can
reach the replica (``dataset_access.py``); if not, the attempt fails with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import suanwang
from suanwang.adapters.backends.dataset_access import open_replica
from suanwang.adapters.backends.sandbox import (
    HostFacts,
    IsolationMode,
    probe_host,
)
from suanwang.adapters.backends.slurm_cli import (
    Runner,
    SlurmCli,
    SlurmCommandError,
    SlurmUnreachable,
    run_process,
)
from suanwang.adapters.backends.slurm_files import JobFiles, read_log
from suanwang.adapters.backends.slurm_parse import (
    SlurmJob,
    SlurmOutputError,
    parse_sbatch,
    parse_sinfo,
)
from suanwang.adapters.backends.slurm_queue import QueueReader, capacity_of
from suanwang.adapters.backends.slurm_run import ip_of, run_argv
from suanwang.adapters.backends.slurm_script import (
    Submission,
    sbatch_argv,
)
from suanwang.config import Settings
from suanwang.domain.chip_resources import slurm_gres
from suanwang.domain.connections import Connection, SlurmConnection
from suanwang.domain.errors import DomainError
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import JobNetwork, Workload, job_area_parts
from suanwang.ports import (
    Clock,
    ClusterCapacity,
    EngineUnreachable,
    Handle,
    LaunchRequest,
    RunRef,
    RunStatus,
    TenantUids,
    parse_run_name,
    run_name,
)

NOT_ROOT = (
    "the slurm cluster cannot run jobs as tenant identities: the control plane runs as uid "
    "{uid}, and sbatch --uid needs root; run it as root, or set "
    "SUANWANG_LOCAL_ISOLATION=single-user-dev for development (jobs then run as this user)"
)
NO_BWRAP = (
    "the slurm cluster cannot sandbox tenant jobs: bwrap not found (apt-get install bubblewrap)"
)
NO_GATEWAY = (
    "could not start: network 'gateway' is not available on Slurm clusters "
    "(use network 'none', or a local cluster)"
)


class SlurmBackend:
    """Runs attempts as Slurm batch jobs through the Slurm client commands."""

    name = "slurm"

    def __init__(
        self,
        clock: Clock,
        settings: Settings,
        *,
        tenant_uids: TenantUids | None = None,
        runner: Runner = run_process,
        host: HostFacts | None = None,
    ) -> None:
        self.clock = clock
        self.spool = settings.slurm_spool
        self._runner = runner
        self._sandboxed = IsolationMode(settings.local_isolation) is IsolationMode.SANDBOX
        self._tenant_uids = tenant_uids
        self._engine_uid = settings.engine_uid
        self._host = host or probe_host()
        self._queue = QueueReader()
        self._code_root = str(Path(suanwang.__file__).resolve().parents[1])

    # --- the Backend port ---------------------------------------------------------------
    def refusal(self, workload: Workload) -> str | None:  # noqa: ARG002 (Backend protocol)
        """Why no run can start (sandbox mode without root, bwrap or tenant uids)."""
        if not self._sandboxed:
            return None
        if self._host.euid != 0:
            return NOT_ROOT.format(uid=self._host.euid)
        if self._host.bwrap is None:
            return NO_BWRAP
        if self._tenant_uids is None:
            return "the slurm backend was built without tenant identities (a wiring bug)"
        return None

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Submit the attempt unless it was submitted before; its status either way."""
        connection = _for_tenant(_slurm(request.connection), request)
        if not request.command:
            raise ValueError("the slurm backend needs a command")
        files = JobFiles(self.spool, request.job_id, request.attempt)
        cli = SlurmCli(connection.bin_dir, self._runner)
        name = run_name(request.job_id, request.attempt)
        handle = self._handle(request.cluster, connection, name, files)
        placed = self._placed_host(cli, request)
        host = placed[1] if placed is not None else None
        if placed is not None:
            handle["node"], handle["host"] = placed
        known = self._submitted(cli, files, name)
        if known is not None:
            files.record_id(known)
            return self.poll(request.job_id, request.attempt, {**handle, "slurm_job_id": known})
        problem = self._problem(request)
        if problem is not None:
            return RunStatus(AttemptState.FAILED, handle=handle, reason=problem, exit_code=127)
        uid = self._uid(request)
        if request.dataset_dir is not None and uid is not None:
            blocked = open_replica(Path(request.dataset_dir), uid)
            if blocked is not None:
                return RunStatus(AttemptState.FAILED, handle=handle, reason=blocked, exit_code=127)
        files.prepare(uid)
        argv = sbatch_argv(
            cli.program("sbatch"),
            self._submission(request, connection, files, uid),
            run_argv(request, files.work, uid, host, self._code_root, self._host.bwrap),
        )
        try:
            slurm_id = parse_sbatch(cli.run_argv(argv))
        except SlurmUnreachable:
            raise  # the job may exist: the next try finds it by name
        except (SlurmCommandError, SlurmOutputError) as exc:
            return RunStatus(AttemptState.FAILED, handle=handle, reason=f"could not submit: {exc}")
        finally:
            self._queue.forget(connection.bin_dir)
        files.record_id(slurm_id)
        return RunStatus(
            AttemptState.STARTING,
            handle={**handle, "slurm_job_id": slurm_id},
            reason=f"submitted as slurm job {slurm_id}",
        )

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        """The attempt's state from Slurm (alive while slurmctld cannot be asked)."""
        files = JobFiles(self.spool, job_id, attempt)
        bin_dir = str(handle.get("bin_dir", ""))
        slurm_id = _as_int(handle.get("slurm_job_id")) or files.slurm_id()
        full = {**handle, "slurm_job_id": slurm_id} if slurm_id else dict(handle)
        if slurm_id is None:
            return RunStatus(AttemptState.LOST, handle=full, reason="no slurm job was submitted")
        try:
            job = self._queue.job(SlurmCli(bin_dir, self._runner), slurm_id)
        except (SlurmCommandError, SlurmOutputError) as exc:
            raise EngineUnreachable(f"slurm: {exc}") from exc
        if job is None:
            reason = f"slurm no longer knows job {slurm_id}"
            return RunStatus(
                AttemptState.LOST, handle=full, reason=reason, ended_at=self.clock.now()
            )
        return _status(job, full)

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        """``scancel`` the attempt's job (by id, or by name if it has none yet)."""
        files = JobFiles(self.spool, job_id, attempt)
        bin_dir = str(handle.get("bin_dir", ""))
        cli = SlurmCli(bin_dir, self._runner)
        slurm_id = _as_int(handle.get("slurm_job_id")) or files.slurm_id()
        target = [str(slurm_id)] if slurm_id else [f"--name={run_name(job_id, attempt)}"]
        try:
            cli.run("scancel", *target)
        except SlurmCommandError as exc:
            if "already completed" not in str(exc) and "Invalid job id" not in str(exc):
                raise
        finally:
            self._queue.forget(bin_dir)

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:  # noqa: ARG002 (Backend protocol)
        """Up to ``limit`` bytes of the attempt's output file from ``offset``."""
        return read_log(JobFiles(self.spool, job_id, attempt).output, offset, limit)

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:  # noqa: ARG002 (Backend protocol)
        """Usable nodes of the partition with their cards (unhealthy with the reason)."""
        try:
            slurm = _slurm(connection)
        except ValueError as exc:
            return ClusterCapacity(healthy=False, reason=str(exc))
        if slurm.slurmrestd_url:
            reason = "slurmrestd is not supported yet: leave slurmrestd_url empty to use sbatch"
            return ClusterCapacity(healthy=False, reason=reason)
        return capacity_of(SlurmCli(slurm.bin_dir, self._runner), slurm.partition)

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        """Jobs named ``suanwang-<job>-<attempt>`` that slurmctld holds in the partitions
        suanwang submits to (the block's and its tenants')."""
        slurm = _slurm(connection)
        cli = SlurmCli(slurm.bin_dir, self._runner)
        found: list[RunRef] = []
        for job in self._queue.jobs(cli, fresh=True):
            parsed = parse_run_name(job.name)
            if parsed is None or job.partition not in slurm.partitions:
                continue
            handle = {"cluster": cluster, "slurm_job_id": job.job_id, "bin_dir": slurm.bin_dir}
            alive = not job.attempt_state.ended
            found.append(RunRef(parsed[0], parsed[1], handle, alive))
        return found

    # --- helpers ------------------------------------------------------------------------
    def _submitted(self, cli: SlurmCli, files: JobFiles, name: str) -> int | None:
        """The Slurm id of an earlier submit of this attempt (id file, else by name)."""
        recorded = files.slurm_id()
        if recorded is not None:
            return recorded
        if not files.job_dir.exists():
            return None  # never prepared: nothing was submitted for this job
        try:
            jobs = self._queue.jobs(cli, fresh=True)
        except (SlurmCommandError, SlurmOutputError) as exc:
            raise EngineUnreachable(f"slurm: {exc}") from exc
        matches = [j.job_id for j in jobs if j.name == name]
        return max(matches) if matches else None

    def _problem(self, request: LaunchRequest) -> str | None:
        refusal = self.refusal(request.workload)
        if refusal is not None:
            return refusal
        if request.workload is Workload.TENANT_JOB and request.network is JobNetwork.GATEWAY:
            return NO_GATEWAY
        try:
            job_area_parts(request.working_dir)
        except DomainError as exc:
            return f"could not start: {exc.message}"
        if _gres(request.chip) is None:
            return f"could not start: chip {request.chip!r} has no Slurm GRES"
        return None

    def _uid(self, request: LaunchRequest) -> int | None:
        if not self._sandboxed:
            return None
        if request.workload is Workload.PLATFORM_ENGINE:
            return self._engine_uid
        assert self._tenant_uids is not None  # refusal() said so otherwise
        return self._tenant_uids.uid_for(request.tenant)

    def _handle(
        self, cluster: str, connection: SlurmConnection, name: str, files: JobFiles
    ) -> dict[str, Any]:
        return {
            "cluster": cluster,
            "name": name,
            "bin_dir": connection.bin_dir,
            "partition": connection.partition,
            "output": str(files.output),
        }

    def _submission(
        self, request: LaunchRequest, connection: SlurmConnection, files: JobFiles, uid: int | None
    ) -> Submission:
        nodes = tuple(dict.fromkeys(p.node for p in request.placements))
        per_node = max((p.cards for p in request.placements), default=1)
        return Submission(
            name=run_name(request.job_id, request.attempt),
            partition=connection.partition,
            nodes=max(1, len(nodes)),
            cards_per_node=per_node,
            gres=_gres(request.chip) or "",
            output=files.output,
            chdir=files.work,
            script=files.script,
            account=connection.account,
            qos=connection.qos,
            nodelist=nodes,
            time_limit_s=request.max_runtime_s,
            requeue=request.preemptible,
            uid=uid,
            grace_s=request.grace_s,
        )

    def _placed_host(self, cli: SlurmCli, request: LaunchRequest) -> tuple[str, str] | None:
        """The name and IP address of the one node a platform engine is pinned to (from
        slurmctld's node list), which is where it listens and where the gateway will reach
        it once the control plane has checked them (``domain/endpoints.py``)."""
        nodes = {p.node for p in request.placements}
        if request.workload is not Workload.PLATFORM_ENGINE or len(nodes) != 1:
            return None
        try:
            found = parse_sinfo(cli.run("sinfo", "--json"))
        except (SlurmCommandError, SlurmOutputError) as exc:
            raise EngineUnreachable(f"slurm: {exc}") from exc
        node = next((n for n in found if n.name in nodes), None)
        address = ip_of(node.address) if node is not None else None
        return (node.name, address) if node is not None and address is not None else None


def _for_tenant(connection: SlurmConnection, request: LaunchRequest) -> SlurmConnection:
    """The tenant's partition, account and QoS for its jobs; the block's for platform
    engines (they run for the platform, not the tenant)."""
    if request.workload is Workload.PLATFORM_ENGINE:
        return connection.for_tenant("")
    return connection.for_tenant(request.tenant)


def _status(job: SlurmJob, handle: dict[str, Any]) -> RunStatus:
    state = job.attempt_state
    reason = job.describe if state.ended or job.restarts or job.state != "RUNNING" else ""
    return RunStatus(
        state,
        handle=handle,
        exit_code=job.exit_code if state.ended else None,
        reason=reason,
        started_at=job.start_time if state is not AttemptState.STARTING else None,
        ended_at=job.end_time if state.ended else None,
    )


def _slurm(connection: Connection | None) -> SlurmConnection:
    if not isinstance(connection, SlurmConnection):
        raise ValueError(f"a slurm cluster needs a slurm connection, not {connection!r}")
    return connection


def _gres(chip: str) -> str | None:
    """The chip's GRES ("" for cpu slots), None if the chip has no Slurm name."""
    try:
        return slurm_gres(chip)
    except DomainError:
        return None


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
