"""The argv of one Slurm run: its environment, its sandbox, where it starts.

:func:`run_argv` turns a :class:`~suanwang.ports.LaunchRequest` into what the constant
batch script execs (``slurm_script.job_argv``). In sandbox mode (a ``uid``) the run is
confined in bubblewrap as that uid on the node, seeing its own directory at
:data:`~suanwang.domain.workloads.JOB_AREA`; bubblewrap runs unprivileged there, so only
paths any uid can reach are shown (:func:`world_readable`). Platform engines share the
node's network and get :data:`NODE_ADDRESS_ENV`, the address the backend placed them on.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import sys
from pathlib import Path

from suanwang.adapters.backends.sandbox import Confinement, root_layout
from suanwang.adapters.backends.sandbox_argv import Sandbox, world_readable
from suanwang.adapters.backends.slurm_script import JOB_PATH, job_argv
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.workloads import JOB_AREA, Workload, job_area_parts
from suanwang.ports import LaunchRequest


def run_argv(
    request: LaunchRequest,
    work: Path,
    uid: int | None,
    host: str | None,
    code_root: str,
    bwrap: str | None,
) -> list[str]:
    """The run's argv: ``[srun] [bwrap …] env K=V … command`` (see ``slurm_script.py``)."""
    engine = request.workload is Workload.PLATFORM_ENGINE
    parts = job_area_parts(request.working_dir)
    env = {
        "PATH": f"{sys.prefix}/bin:{JOB_PATH}",
        "HOME": JOB_AREA if uid is not None else str(work),
        "PYTHONPATH": code_root,  # job programs (python -m suanwang.corpus); the job's env wins
        **dict(request.env),
        "SUANWANG_JOB_ID": request.job_id,
        "SUANWANG_ATTEMPT": str(request.attempt),
        "SUANWANG_CARDS": str(sum(p.cards for p in request.placements)),
        "SUANWANG_RESUME_COUNT": str(request.resume_count),
    }
    if request.dataset_dir is not None:
        env["SUANWANG_DATASET_DIR"] = DATASET_MOUNT if uid is not None else request.dataset_dir
    if engine:
        env["PYTHONPATH"] = code_root
        if host is not None:
            env[NODE_ADDRESS_ENV] = host
    command = list(request.command)
    nodes = len({p.node for p in request.placements}) or 1
    if uid is None:
        if parts:
            where = str(work.joinpath(*parts))
            command = ["/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", where, *command]
        return job_argv(env, command, sandbox=None, nodes=nodes)
    wanted = (sys.base_prefix, sys.prefix, code_root)  # the platform's code: read-only
    confinement = Confinement(
        uid=uid,
        work_dir=work,
        cwd_parts=parts,
        read_only=tuple(p for p in wanted if world_readable(p)),
        share_net=engine,
        with_sys=engine,
        dataset_dir=Path(request.dataset_dir) if request.dataset_dir else None,
    )
    program = bwrap or shutil.which("bwrap") or "bwrap"
    return job_argv(env, command, sandbox=Sandbox(program, root_layout(), confinement), nodes=nodes)


def ip_of(address: str) -> str | None:
    """``address`` as an IP address (resolved if it is a name); None if it has none."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None
