"""What one attempt is on Ray: the job submission rendered from a launch request.

Pure (no Ray import, no I/O): :func:`render` turns a :class:`~suanwang.ports.LaunchRequest`
into a :class:`RaySubmission` the Ray backend hands to ``JobSubmissionClient.submit_job``.

- The submission id is the run name ``suanwang-<job>-<attempt>``: Ray refuses a second
  job with the same id, so a retried submit can never start a second run.
- The entrypoint is the job's argv quoted with :func:`shlex.join` (Ray runs it through a
  shell; tenant text is never interpreted by it).
- One node: the entrypoint itself reserves the cards (``entrypoint_resources`` =
  ``{<chip's Ray resource>: cards}``; ``entrypoint_num_cpus`` = slots for ``cpu``).
  Several nodes (a gang): the entrypoint is ``python -m suanwang_ray_gang`` (the package
  is shipped with the job in ``py_modules``), which reserves one placement-group bundle
  per node with the job's strategy (``STRICT_SPREAD`` or ``PACK``) and runs one rank per
  bundle.
- A tenant job (not a platform engine, which keeps the node's network to serve on its
  port) runs inside bubblewrap on the node (:class:`Confine`, ``sandbox_argv.py``): no
  network (``--unshare-net``: it can neither bind a port on the node nor reach the control
  plane or the gateway), read-only ``/usr``, ``/etc`` and ``/lib*``, private ``/tmp``
  (covering Ray's session directory) and ``/run``, a private tmpfs as its work directory
  ``/job`` (also ``HOME``), the node's ``/dev``, nothing of ``/home``, ``/root`` or
  suanwang's data directory. A gang's driver stays outside (it talks to Ray); each rank's
  command is confined. The entrypoint first checks that bwrap is on the node: if not, the
  job fails with a line saying so (exit 127), or, in single-user-dev mode, runs
  unconfined with that line in its log.
- The environment (``runtime_env.env_vars``) is the job's own variables plus
  ``SUANWANG_JOB_ID``/``SUANWANG_ATTEMPT``/``SUANWANG_CARDS`` (and, for platform engines,
  ``SUANWANG_NODE_ADDRESS``, the address of the node they are pinned to). Nothing of the
  control plane's environment is sent; the run otherwise has the Ray worker's environment.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanwang.adapters.backends.sandbox import Confinement, RootLayout
from suanwang.adapters.backends.sandbox_argv import Sandbox, confined_argv
from suanwang.domain.chip_resources import ray_resource
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.errors import DomainError
from suanwang.domain.workloads import (
    JOB_AREA,
    GangStrategy,
    JobNetwork,
    Workload,
    job_area_parts,
)
from suanwang.ports import LaunchRequest, run_name

GANG_DRIVER = Path(__file__).with_name("suanwang_ray_gang")
"""The gang driver package, shipped with each multi-node job (suanwang is not on Ray nodes)."""
NO_GATEWAY = (
    "could not start: network 'gateway' is not available on Ray clusters "
    "(use network 'none', or a local cluster)"
)
NO_WORKING_DIR = (
    "could not start: working_dir is not available on Ray clusters (the job starts in "
    "the directory Ray gives it)"
)
STRATEGIES = {GangStrategy.SPREAD: "STRICT_SPREAD", GangStrategy.PACK: "PACK"}


@dataclass(frozen=True, slots=True)
class Pin:
    """The Ray node a run must start on: its node id (a label selector) and address."""

    node_id: str
    address: str
    name: str = ""
    """The node's name in the fleet (the placement's), reported in the handle as ``node``."""


@dataclass(frozen=True, slots=True)
class Confine:
    """How tenant jobs are confined on the Ray nodes."""

    bwrap: str
    """bubblewrap's path (or name, looked up on the node's PATH) on the Ray nodes."""
    layout: RootLayout
    required: bool = True
    """Sandbox mode: without bwrap on the node the job fails; False (single-user-dev):
    it then runs unconfined, with a line saying so in its log."""


@dataclass(frozen=True, slots=True)
class RaySubmission:
    """The arguments of one ``submit_job`` call."""

    submission_id: str
    entrypoint: str
    env: dict[str, str]
    num_cpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    label_selector: dict[str, str] = field(default_factory=dict)
    py_modules: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``JobSubmissionClient.submit_job``."""
        runtime_env: dict[str, Any] = {"env_vars": dict(self.env)}
        if self.py_modules:
            runtime_env["py_modules"] = list(self.py_modules)
            runtime_env["excludes"] = ["__pycache__"]
        found: dict[str, Any] = {
            "entrypoint": self.entrypoint,
            "submission_id": self.submission_id,
            "runtime_env": runtime_env,
            "metadata": dict(self.metadata),
            "entrypoint_num_cpus": self.num_cpus,
        }
        if self.resources:
            found["entrypoint_resources"] = dict(self.resources)
        if self.label_selector:
            found["entrypoint_label_selector"] = dict(self.label_selector)
        return found


def problem(request: LaunchRequest) -> str | None:
    """Why the attempt cannot run on Ray at all (None if it can)."""
    if not request.command:
        return "could not start: the ray backend needs a command"
    if request.workload is Workload.TENANT_JOB and request.network is JobNetwork.GATEWAY:
        return NO_GATEWAY
    try:
        if job_area_parts(request.working_dir):
            return NO_WORKING_DIR
        ray_resource(request.chip)
    except DomainError as exc:
        return f"could not start: {exc.message}"
    return None


def nodes_of(request: LaunchRequest) -> tuple[str, ...]:
    """The distinct nodes the scheduler placed the attempt on, in order."""
    return tuple(dict.fromkeys(p.node for p in request.placements))


def render(
    request: LaunchRequest, pin: Pin | None = None, confine: Confine | None = None
) -> RaySubmission:
    """The submission of ``request`` (check :func:`problem` first); ``pin`` pins a
    one-node platform engine to the node the scheduler chose; ``confine`` (None: nothing
    is confined) sandboxes a tenant job."""
    if request.workload is not Workload.TENANT_JOB:
        confine = None
    name = run_name(request.job_id, request.attempt)
    resource = ray_resource(request.chip)
    per_node = max((p.cards for p in request.placements), default=1)
    nodes = max(1, len(nodes_of(request)))
    env = {
        **dict(request.env),
        "SUANWANG_JOB_ID": request.job_id,
        "SUANWANG_ATTEMPT": str(request.attempt),
        "SUANWANG_CARDS": str(sum(p.cards for p in request.placements)),
        "SUANWANG_RESUME_COUNT": str(request.resume_count),
    }
    if request.dataset_dir is not None:
        env["SUANWANG_DATASET_DIR"] = request.dataset_dir if confine is None else DATASET_MOUNT
    if pin is not None:
        env[NODE_ADDRESS_ENV] = pin.address
    metadata = {
        "suanwang_job": request.job_id,
        "suanwang_attempt": str(request.attempt),
        "suanwang_cluster": request.cluster,
    }
    if nodes > 1:
        driver = [
            "python", "-m", GANG_DRIVER.name, "--name", name, "--nodes", str(nodes),
            "--resource", resource, "--cards", str(per_node),
            "--strategy", STRATEGIES[request.gang], "--",
        ]  # fmt: skip
        return RaySubmission(
            submission_id=name,
            entrypoint=_entrypoint(driver, request.command, confine, request.dataset_dir),
            env=env,
            py_modules=(str(GANG_DRIVER),),
            metadata=metadata,
        )
    cpus, resources = _reserve(resource, per_node)
    return RaySubmission(
        submission_id=name,
        entrypoint=_entrypoint([], request.command, confine, request.dataset_dir),
        env=env,
        num_cpus=cpus,
        resources=resources,
        label_selector={NODE_ID_LABEL: pin.node_id} if pin is not None else {},
        metadata=metadata,
    )


NODE_ID_LABEL = "ray.io/node-id"
"""The label every Ray node carries with its node id (pins an entrypoint to one node)."""


def _reserve(resource: str, cards: int) -> tuple[float, dict[str, float]]:
    """``(entrypoint_num_cpus, entrypoint_resources)`` holding ``cards`` of ``resource``."""
    if resource == "CPU":
        return float(cards), {}
    return 0.0, {resource: float(cards)}


def _entrypoint(
    driver: list[str],
    command: tuple[str, ...],
    confine: Confine | None,
    dataset_dir: str | None = None,
) -> str:
    """The shell line Ray runs: ``driver`` (a gang's) then the command, confined when
    ``confine`` is given (with the dataset bound read-only), behind a check that bwrap is
    on the node."""
    plain = shlex.join([*driver, *command])
    if confine is None:
        return plain
    confinement = Confinement(
        uid=0,  # not used by bwrap_args: the run keeps the uid of the Ray worker
        work_dir=None,
        cwd_parts=(),
        read_only=(),
        dataset_dir=Path(dataset_dir) if dataset_dir else None,
    )
    sandbox = Sandbox(confine.bwrap, confine.layout, confinement)
    confined = shlex.join([*driver, *confined_argv({"HOME": JOB_AREA}, command, sandbox)])
    found = f"command -v {shlex.quote(confine.bwrap)} >/dev/null 2>&1"
    missing = f"suanwang: bubblewrap ({confine.bwrap}) not found on this Ray node"
    if confine.required:
        hint = (
            "tenant jobs run sandboxed on Ray: install bubblewrap on every node, or set ray.bwrap"
        )
        say = shlex.quote(f"{missing}; {hint}")
        return f"{found} || {{ echo {say} >&2; exit 127; }}; exec {confined}"
    say = shlex.quote(f"{missing}; running unconfined (single-user-dev)")
    return f"if {found}; then exec {confined}; fi; echo {say} >&2; exec {plain}"
