"""Periodic reallocation in the simulator: the glue between a round and
:func:`suanwang.scheduler.realloc.reallocate`.

After each cycle of a policy with ``reallocation`` on, when the cycle left no job waiting
(every pending job was admitted, or none was pending), the round's moves are appended to
its decisions: a ``Preempt`` of the job for itself, then its ``Admit`` on the new pool.
The engine applies them as it applies any preemption and admission, so a move loses the
work since the job's last checkpoint and waits the restart delay under ``--cost
realistic``, and loses nothing under ``--cost free``. Moves use only cards that no
waiting job was given or kept waiting for.

With ``batch_packing`` on, a round whose snapshot holds one batch
(:mod:`suanwang.scheduler.batch`) is planned by :meth:`Reallocator.batch_round` instead
of the cycle: the engine runs it every round while the batch lasts (the plan changes with
time, not only with events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.scheduler.batch import batch_round
from suanwang.scheduler.decisions import Admit, Decision
from suanwang.scheduler.policy import Policy
from suanwang.scheduler.realloc import MoveCost, reallocate
from suanwang.scheduler.snapshot import Snapshot
from suanwang.simulator.state import CostModel


@dataclass(frozen=True, slots=True)
class Reallocator:
    """A policy's reallocation round with the run's cost of a move."""

    policy: Policy
    cost: MoveCost

    @classmethod
    def of(
        cls,
        policy: Policy | None,
        cost_model: CostModel,
        restart_delay_s: float,
        decision_interval_s: float,
    ) -> Reallocator | None:
        """A reallocator for ``policy``, or None when it does not reallocate."""
        if policy is None or not policy.reallocation:
            return None
        delay = 0.0 if cost_model is CostModel.FREE else restart_delay_s
        return cls(policy, MoveCost(restart_delay_s=delay, round_s=decision_interval_s or 60.0))

    def extend(self, snapshot: Snapshot, decisions: Sequence[Decision]) -> list[Decision]:
        """The cycle's decisions, then this round's moves if no job is left waiting."""
        admits = [d for d in decisions if type(d) is Admit]
        if len(admits) < len(snapshot.pending):
            return list(decisions)
        return [*decisions, *reallocate(snapshot, self.policy, self.cost, admits)]

    def batch_round(self, snapshot: Snapshot) -> list[Decision] | None:
        """The round's decisions when the snapshot holds one batch, else None."""
        return batch_round(snapshot, self.policy, self.cost)
