"""What slurmctld holds: a shared ``squeue`` snapshot for polls, ``sinfo`` for capacity.

One ``squeue --json`` lists every job slurmctld holds (22.05 ignores filters with
``--json``); :class:`QueueReader` keeps it for :data:`SNAPSHOT_TTL_S` so the polls of one
control-loop tick cost one call, not one per job. A job slurmctld has forgotten (ended more
than ``MinJobAge`` ago) is looked up in the completion log (``sacct --completion``, which
works without slurmdbd when ``JobCompType=jobcomp/filetxt``).

:func:`capacity_of` turns ``sinfo --json`` into a :class:`~suanwang.ports.ClusterCapacity`:
the usable nodes of the partition, each with its chip (from its GRES, via
:mod:`suanwang.domain.chip_resources`) and card count; a node without a known GRES counts
its CPUs as ``cpu`` slots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from suanwang.adapters.backends.slurm_cli import SlurmCli, SlurmCommandError
from suanwang.adapters.backends.slurm_parse import (
    SACCT_FIELDS,
    SlurmJob,
    SlurmNode,
    SlurmOutputError,
    parse_sacct_completion,
    parse_sinfo,
    parse_squeue,
)
from suanwang.domain.chip_resources import chip_for_slurm_gres
from suanwang.domain.fleet import MAX_CARDS_PER_NODE, NodeSpec
from suanwang.domain.ids import ChipName
from suanwang.ports import ClusterCapacity

SNAPSHOT_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    taken: float
    jobs: dict[int, SlurmJob]


class QueueReader:
    """``squeue --json`` snapshots per Slurm installation (``bin_dir``), thread-safe."""

    def __init__(self, ttl_s: float = SNAPSHOT_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._snapshots: dict[str, _Snapshot] = {}

    def jobs(self, cli: SlurmCli, *, fresh: bool = False) -> list[SlurmJob]:
        """Every job slurmctld holds (a snapshot at most ``ttl_s`` old unless ``fresh``)."""
        return list(self._snapshot(cli, fresh).values())

    def job(self, cli: SlurmCli, slurm_id: int) -> SlurmJob | None:
        """Job ``slurm_id`` from the snapshot, else from the completion log, else None."""
        found = self._snapshot(cli, fresh=False).get(slurm_id)
        if found is not None:
            return found
        found = self._snapshot(cli, fresh=True).get(slurm_id)
        if found is not None:
            return found
        return _completed(cli, slurm_id)

    def forget(self, bin_dir: str) -> None:
        """Drop the snapshot (after a submit or a cancel changed the queue)."""
        with self._lock:
            self._snapshots.pop(bin_dir, None)

    def _snapshot(self, cli: SlurmCli, fresh: bool) -> dict[int, SlurmJob]:
        now = time.monotonic()
        with self._lock:
            kept = self._snapshots.get(cli.bin_dir)
            if kept is not None and not fresh and now - kept.taken < self._ttl_s:
                return kept.jobs
        jobs = {j.job_id: j for j in parse_squeue(cli.run("squeue", "--json"))}
        with self._lock:
            self._snapshots[cli.bin_dir] = _Snapshot(now, jobs)
        return jobs


def _completed(cli: SlurmCli, slurm_id: int) -> SlurmJob | None:
    """The job's final state from the completion log (None if it is not there either)."""
    try:
        out = cli.run("sacct", "--completion", "-P", "-n", "-j", str(slurm_id), "-o", SACCT_FIELDS)
    except SlurmCommandError:
        return None  # no completion log configured: the job is simply unknown
    matches = [j for j in parse_sacct_completion(out) if j.job_id == slurm_id]
    return matches[-1] if matches else None


def capacity_of(cli: SlurmCli, partition: str) -> ClusterCapacity:
    """The partition's usable nodes and cards; unhealthy with the reason, never raising."""
    try:
        nodes = parse_sinfo(cli.run("sinfo", "--json"))
    except (SlurmCommandError, SlurmOutputError) as exc:
        return ClusterCapacity(healthy=False, reason=f"slurm unreachable: {exc}")
    members = [n for n in nodes if partition in n.partitions]
    if not members:
        known = sorted({p for n in nodes for p in n.partitions})
        reason = f"partition {partition!r} not found (slurm has: {', '.join(known) or 'none'})"
        return ClusterCapacity(healthy=False, reason=reason)
    usable = [n for n in members if n.usable]
    if not usable:
        states = ", ".join(f"{n.name}={_state(n)}" for n in members[:5])
        reason = f"no usable node in partition {partition!r} ({states})"
        return ClusterCapacity(healthy=False, reason=reason)
    return ClusterCapacity(healthy=True, nodes=tuple(node_spec(n) for n in usable))


def node_spec(node: SlurmNode) -> NodeSpec:
    """The node as suanwang sees it: its most numerous known chip, else its CPUs."""
    best: tuple[int, ChipName] | None = None
    for name, kind, count in node.gres:
        chip = chip_for_slurm_gres(f"{name}:{kind}" if kind else name)
        if chip is None and kind:
            chip = chip_for_slurm_gres(kind)  # "gpu:ascend910b" written for a typed gpu
        if chip is not None and count > 0 and (best is None or count > best[0]):
            best = (count, chip)
    if best is None:
        return NodeSpec(node.name, ChipName("cpu"), max(1, min(node.cpus, MAX_CARDS_PER_NODE)))
    return NodeSpec(node.name, best[1], min(best[0], MAX_CARDS_PER_NODE))


def _state(node: SlurmNode) -> str:
    return "+".join([node.state, *node.flags]).lower()
