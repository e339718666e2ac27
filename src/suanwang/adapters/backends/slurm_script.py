"""What suanwang hands to ``sbatch``: the options, a constant batch script, the job's argv.

Tenant text never reaches a shell or a ``#SBATCH`` line: every directive is an ``sbatch``
option given as one argument (subprocess argument list), the batch script is the constant
:data:`BATCH_SCRIPT` (``exec "$@"``), and the command with its environment travels as the
script's arguments, which Slurm stores and passes to ``execve`` as an array. A command such
as ``"x\\n#SBATCH --uid=0"`` is therefore one argument of the run, nothing else.

In sandbox mode (:func:`job_argv` with a :class:`Sandbox`) the run is wrapped in the same
bubblewrap confinement as a local run (``sandbox.py``), started by the tenant's own uid
on the compute node (unprivileged user namespaces): its own ``/job``, no view of the data
directory, ``/root`` or ``/home``, and no network for tenant jobs. ``/dev`` is the host's
so the cards Slurm allocated stay reachable (Slurm's ``task/cgroup`` with
``ConstrainDevices=yes`` limits them to the allocation where the operator configures it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from suanwang.adapters.backends.sandbox_argv import Sandbox, confined_argv

BATCH_SCRIPT = """#!/bin/sh
# suanwang batch script: the job's argv (with its environment) is this script's arguments.
exec "$@"
"""
SCRIPT_NAME = "batch.sh"
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class Submission:
    """The ``sbatch`` options of one attempt (everything but the argv of the run)."""

    name: str
    partition: str
    nodes: int
    cards_per_node: int
    gres: str
    """``gpu:<type>`` for accelerators; ``""`` for cpu slots (then ``--cpus-per-task``)."""
    output: Path
    chdir: Path
    script: Path
    account: str = ""
    qos: str = ""
    nodelist: tuple[str, ...] = ()
    time_limit_s: int | None = None
    requeue: bool = False
    uid: int | None = None
    """Run as this uid (and gid): needs ``sbatch`` as root and the uid known to Slurm."""
    grace_s: float | None = None
    """The job's ``preemption_grace_s``: with a time limit, SIGTERM that long before it
    (``--signal=B:TERM@<s>``) so the job checkpoints before Slurm kills it."""


def sbatch_argv(sbatch: str, sub: Submission, run: Sequence[str]) -> list[str]:
    """The full ``sbatch`` command line: options, the batch script, the run's argv."""
    argv = [
        sbatch,
        "--parsable",
        f"--job-name={sub.name}",
        f"--partition={sub.partition}",
        f"--nodes={sub.nodes}",
        "--ntasks-per-node=1",
        f"--output={sub.output}",
        f"--error={sub.output}",
        "--open-mode=append",
        f"--chdir={sub.chdir}",
        "--export=NONE",
        "--requeue" if sub.requeue else "--no-requeue",
    ]
    if sub.gres:
        argv.append(f"--gres={sub.gres}:{sub.cards_per_node}")
    else:
        argv.append(f"--cpus-per-task={sub.cards_per_node}")
    if sub.account:
        argv.append(f"--account={sub.account}")
    if sub.qos:
        argv.append(f"--qos={sub.qos}")
    if sub.nodelist:
        argv.append(f"--nodelist={','.join(sub.nodelist)}")
    if sub.time_limit_s is not None:
        argv.append(f"--time={time_limit(sub.time_limit_s)}")
        if sub.grace_s:
            argv.append(f"--signal=B:TERM@{math.ceil(sub.grace_s)}")
    if sub.uid is not None:
        argv += [f"--uid={sub.uid}", f"--gid={sub.uid}"]
    return [*argv, str(sub.script), *run]


def time_limit(seconds: int) -> str:
    """``--time`` in whole minutes, rounded up (Slurm's granularity), at least one."""
    return str(max(1, math.ceil(seconds / 60)))


def job_argv(
    env: Mapping[str, str],
    command: Sequence[str],
    *,
    sandbox: Sandbox | None,
    nodes: int,
    srun: str = "srun",
    env_program: str = "/usr/bin/env",
) -> list[str]:
    """The argv the batch script execs: ``[srun] [bwrap …] env K=V … command``.

    ``env`` sets the run's variables on top of Slurm's own (``SLURM_*``, the devices);
    ``sbatch --export=NONE`` keeps the control plane's environment out of the job. A
    multi-node run starts one task per node with ``srun``, each sandboxed on its node.
    """
    argv = confined_argv(env, command, sandbox, env_program)
    if nodes > 1:
        argv = [srun, f"--nodes={nodes}", "--ntasks-per-node=1", "--export=ALL", *argv]
    return argv
