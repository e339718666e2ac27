"""Reading what Ray answers: job details into run statuses, the node list into capacity.

Pure (no Ray import, no I/O). ``JobSubmissionClient`` returns ``JobDetails`` objects;
:func:`job_of` copies the attributes suanwang uses into a :class:`RayJob` at once, so
nothing past this module reads Ray's objects. The dashboard's state API
(``GET /api/v0/nodes``) answers JSON; :func:`nodes_of` parses it into :class:`RayNode`
rows and :func:`capacity_of` turns the live ones into a
:class:`~suanwang.ports.ClusterCapacity` (each node's chip is its custom resource, see
:mod:`suanwang.domain.chip_resources`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suanwang.domain.chip_resources import chip_for_ray_resource
from suanwang.domain.fleet import NodeSpec
from suanwang.domain.ids import ChipName
from suanwang.domain.jobs import AttemptState
from suanwang.ports import ClusterCapacity, Handle, RunStatus

STATES = {
    "PENDING": AttemptState.STARTING,
    "RUNNING": AttemptState.RUNNING,
    "SUCCEEDED": AttemptState.SUCCEEDED,
    "FAILED": AttemptState.FAILED,
    "STOPPED": AttemptState.CANCELLED,
}
"""Ray job status -> attempt state."""


class RayAnswerError(ValueError):
    """Ray answered something this backend cannot read (a version it does not know)."""


@dataclass(frozen=True, slots=True)
class RayJob:
    """One Ray job as suanwang needs it."""

    submission_id: str
    status: str
    message: str = ""
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    exit_code: int | None = None
    driver_node_id: str = ""

    @property
    def state(self) -> AttemptState:
        found = STATES.get(self.status)
        if found is None:
            raise RayAnswerError(f"unknown ray job status {self.status!r}")
        return found


@dataclass(frozen=True, slots=True)
class RayNode:
    """One node of the Ray cluster from the state API."""

    node_id: str
    name: str
    address: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)


def job_of(details: object) -> RayJob:
    """The :class:`RayJob` of a ``JobDetails`` (its ``status`` may be an enum)."""
    status = getattr(details, "status", None)
    status_text = str(getattr(status, "value", status) or "")
    exit_code = getattr(details, "driver_exit_code", None)
    return RayJob(
        submission_id=str(getattr(details, "submission_id", None) or ""),
        status=status_text,
        message=str(getattr(details, "message", None) or ""),
        start_time_ms=_int(getattr(details, "start_time", None)),
        end_time_ms=_int(getattr(details, "end_time", None)),
        exit_code=_int(exit_code),
        driver_node_id=str(getattr(details, "driver_node_id", None) or ""),
    )


def status_of(job: RayJob, handle: Handle) -> RunStatus:
    """The :class:`~suanwang.ports.RunStatus` of ``job`` (times in seconds)."""
    state = job.state
    exit_code = job.exit_code
    if state is AttemptState.SUCCEEDED:
        exit_code = 0
    reason = job.message if state is not AttemptState.RUNNING else ""
    started = job.start_time_ms / 1000 if job.start_time_ms else None
    return RunStatus(
        state,
        handle=handle,
        exit_code=exit_code if state.ended else None,
        reason=reason,
        started_at=started if state is not AttemptState.STARTING else None,
        ended_at=job.end_time_ms / 1000 if state.ended and job.end_time_ms else None,
    )


def nodes_of(answer: Any) -> list[RayNode]:
    """The nodes in a ``GET /api/v0/nodes`` answer (RayAnswerError if it is not one)."""
    try:
        rows = answer["data"]["result"]["result"]
        return [_node(row) for row in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise RayAnswerError(f"ray's node list is not readable: {exc!r}") from exc


def _node(row: Mapping[str, Any]) -> RayNode:
    return RayNode(
        node_id=str(row["node_id"]),
        name=str(row.get("node_name") or row["node_ip"]),
        address=str(row["node_ip"]),
        alive=row["state"] == "ALIVE",
        resources={str(k): float(v) for k, v in (row.get("resources_total") or {}).items()},
    )


def named(nodes: list[RayNode]) -> dict[str, RayNode]:
    """Live nodes by the name suanwang gives them: Ray's node name (its IP unless the node
    was started with ``--node-name``), with the node id appended where two share it."""
    alive = [n for n in nodes if n.alive]
    counts = Counter(n.name for n in alive)
    return {(n.name if counts[n.name] == 1 else f"{n.name}-{n.node_id[:12]}"): n for n in alive}


def chip_of(node: RayNode) -> tuple[ChipName, int] | None:
    """The node's chip and card count: its chip resource with the most units, else its
    CPUs (None for a node with neither)."""
    chips = [
        (chip, int(amount))
        for name, amount in node.resources.items()
        if name != "CPU" and (chip := chip_for_ray_resource(name)) is not None and amount >= 1
    ]
    if chips:
        return max(chips, key=lambda c: c[1])
    cpus = int(node.resources.get("CPU", 0))
    return (ChipName("cpu"), cpus) if cpus >= 1 else None


def capacity_of(nodes: list[RayNode]) -> ClusterCapacity:
    """Live nodes with a known chip, as fleet nodes (a healthy answer)."""
    specs = []
    for name, node in sorted(named(nodes).items()):
        chip = chip_of(node)
        if chip is not None:
            specs.append(NodeSpec(name=name, chip=chip[0], cards=chip[1]))
    return ClusterCapacity(healthy=True, nodes=tuple(specs))


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value)
    return None
