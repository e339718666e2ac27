"""The discrete-event simulator: a trace replayed on a virtual clock through a policy.

Events are arrivals, completions and finished dataset transfers. After events, a
scheduling cycle runs at the next multiple of ``decision_interval_s`` (at once when it is
0). A cycle that preempted or staged data is followed by another one interval later, so
policies that free cards first and admit later work; so is one that admitted jobs but
left some pending job without a decision. Between changes no cycle runs: nothing it sees
would differ. The engine applies the policy's
decisions (``Preempt`` first, then ``Admit``, then ``StageDataset``) and raises
:class:`~suanwang.simulator.errors.InvariantViolation` when a decision is impossible
(over-allocation, a broken gang, a non-preemptible victim that did not hold borrowed
quota). Deterministic: no randomness,
no wall clock in the results. No database, no backends: only the scheduler and the fleet.
"""

from __future__ import annotations

import gc
import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from suanwang.domain.chips import accepted_selectors
from suanwang.domain.ids import ChipName, JobId, RegionName
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.decisions import Admit, Decision, Pending, Preempt, StageDataset
from suanwang.scheduler.quota import protected_over_nominal
from suanwang.scheduler.snapshot import PendingJob, RunningJob, Snapshot
from suanwang.simulator.chips import REFERENCE_CHIP, chip_speeds, chip_units
from suanwang.simulator.cluster import ClusterState
from suanwang.simulator.errors import InvariantViolation, SimulationError
from suanwang.simulator.fleet import QuotaPlan, SimFleet, quota_caps
from suanwang.simulator.moves import Reallocator
from suanwang.simulator.outcome import Counters, SimOutcome, attempt_records, job_records
from suanwang.simulator.policies import Policy, scheduler_policy, takes_cache
from suanwang.simulator.state import (
    Attempt,
    CostModel,
    JobState,
    SimJob,
    Stop,
    running_view,
    stop_on_preemption,
)
from suanwang.simulator.trace import TraceJob

_COMPLETION, _STAGED, _ARRIVAL, _CYCLE, _STOPPED = 0, 1, 2, 3, 5
EXTRA_EVENT = 4
"""Events of a subclass (handled by :meth:`Simulation._extra_event`), e.g. the shared
pool's autoscaler ticks (:mod:`suanwang.simulator.pool`)."""
MAX_CYCLES_PER_INSTANT = 100
"""With ``decision_interval_s`` 0, at most this many cycles run at one instant."""
Progress = Callable[[int, int], None]
"""Called now and then with (jobs finished, jobs in the trace)."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How to simulate: cost of preemption, cadence of cycles, reference chip."""

    cost_model: CostModel = CostModel.REALISTIC
    restart_delay_s: float = 30.0
    decision_interval_s: float = 60.0
    reference_chip: str = REFERENCE_CHIP
    max_cycles: int | None = None
    """Give up (SimulationError) after this many cycles; default 50 per job + 10,000."""
    mode: str = "custom"
    """A named set of the settings above (``gavel-matched``, see :data:`GAVEL_MATCHED`),
    or ``custom``; shown in reports."""

    def settings(self) -> dict[str, object]:
        """The configuration as plain values for reports."""
        return {
            "mode": self.mode,
            "cost_model": str(self.cost_model),
            "restart_delay_s": self.restart_delay_s,
            "decision_interval_s": self.decision_interval_s,
            "reference_chip": self.reference_chip,
        }


GAVEL_MATCHED = SimConfig(
    cost_model=CostModel.FREE,
    restart_delay_s=0.0,
    decision_interval_s=360.0,
    reference_chip=REFERENCE_CHIP,
    mode="gavel-matched",
)
"""Like-for-like with Gavel's simulator: 6-minute rounds, moving a job costs nothing (no
lost work, no restart delay), durations measured on the V100 (``sim run --compare-gavel``)."""


class Simulation:
    """One run: a fleet, a trace, a policy and a configuration. Use :func:`simulate`."""

    def __init__(
        self,
        fleet: SimFleet,
        jobs: Sequence[TraceJob],
        policy: Policy,
        config: SimConfig,
        quotas: QuotaPlan | None = None,
    ) -> None:
        """Set up the fleet's nodes, the jobs and the event queue (no event runs yet)."""
        self.config = config
        self.policy = policy
        self.cache = CycleCache() if takes_cache(policy) else None
        self.rounds = bool(getattr(policy, "round_based", False)) and config.decision_interval_s > 0
        """A round-based policy (``gavel-like``) with rounds: one every interval while jobs
        wait or run."""
        self.moves = Reallocator.of(
            scheduler_policy(policy),
            config.cost_model,
            config.restart_delay_s,
            config.decision_interval_s,
        )
        """Periodic reallocation, when the policy does it (:mod:`.moves`)."""
        """Pools carried between cycles (same decisions, less rebuilding)."""
        self.fleet = fleet
        self.cluster = ClusterState(fleet)
        self.speed = chip_speeds(fleet.catalogue, fleet.cards_by_chip(), config.reference_chip)
        self.units = chip_units(self.speed)
        self.jobs: dict[JobId, SimJob] = {}
        tables: dict[tuple[tuple[ChipName, float], ...], Mapping[ChipName, float]] = {}
        accepted: dict[tuple[str, ...], tuple[str, ...]] = {}
        for seq, spec in enumerate(jobs):
            # Equal speed tables become one object: the scheduler caches per table.
            table = tables.setdefault(tuple(sorted(spec.speed.items())), spec.speed)
            if table is not spec.speed:
                spec = replace(spec, speed=table)
            chips = accepted_selectors(spec.chips)
            chips = accepted.setdefault(chips, chips)
            self.jobs[spec.job_id] = SimJob(spec, seq, chips, spec.duration_s)
        self.cluster.add_datasets(j.dataset for j in jobs if j.dataset is not None)
        queues = (quotas or QuotaPlan()).queues_for(j.tenant for j in jobs)
        self.queues = queues
        self.caps = quota_caps(queues, {n.family for n in self.cluster.nodes})
        self.links = fleet.links()
        self.pending: dict[JobId, SimJob] = {}
        self.running: dict[JobId, SimJob] = {}
        self.pending_views: dict[JobId, PendingJob] = {}
        self.running_views: dict[JobId, RunningJob] = {}
        self.last_decisions: Sequence[Decision] = ()
        self.stale_views: list[tuple[float, int, JobId, int]] = []
        """(view valid until, order, job, attempt index): running views to refresh."""
        self.events: list[tuple[float, int, int, object]] = []
        self.counter = 0
        self.cycle_at: float | None = None
        self.cycles = self.admissions = self.preemptions = 0
        self.lost_card_s = self.lost_work_s = self.overhead_card_s = 0.0
        self.policy_wall_s = 0.0
        self.instant_at, self.instant_cycles = -1.0, 0
        self.finished = 0
        self.now = 0.0
        for job in self.jobs.values():
            self._push(job.spec.submit_s, _ARRIVAL, job.spec.job_id)

    def _push(self, at: float, kind: int, payload: object) -> None:
        self.counter += 1
        heapq.heappush(self.events, (at, kind, self.counter, payload))

    def run(self, progress: Progress | None = None) -> SimOutcome:
        """Process every event; return the outcome (invariants are checked by metrics).

        The cyclic garbage collector is paused during the run: the loop makes millions of
        short-lived, acyclic objects, and collection passes cost ~10 % and free nothing.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run(progress)
        finally:
            if collecting:
                gc.enable()

    def _run(self, progress: Progress | None) -> SimOutcome:
        started = time.perf_counter()
        per_job = 1_000 if self.rounds else 50  # round-based policies cycle while jobs wait
        limit = self.config.max_cycles or per_job * len(self.jobs) + 10_000
        handled = 0
        while self.events:
            at, kind, _, payload = heapq.heappop(self.events)
            self.cluster.advance(at)
            self.now = at
            if kind == _CYCLE:
                self._cycle()
                if self.cycles > limit:
                    raise SimulationError(f"the run did not finish within {limit:,} cycles")
            elif kind == _COMPLETION:
                self._complete(*payload)  # type: ignore[misc]
            elif kind == _ARRIVAL:
                self._arrive(payload)  # type: ignore[arg-type]
            elif kind == _STAGED:
                self._staged(*payload)  # type: ignore[misc]
            elif kind == _STOPPED:
                self._stopped(*payload)  # type: ignore[misc]
            else:
                self._extra_event(payload)
            handled += 1
            if progress is not None and handled % 2000 == 0:
                progress(self.finished, len(self.jobs))
        reasons = {d.job: d.reason for d in self.last_decisions if type(d) is Pending}
        for job in self.pending.values():
            job.state = JobState.UNSCHEDULABLE
            job.reason = reasons.get(job.spec.job_id, job.reason)
        if progress is not None:
            progress(self.finished, len(self.jobs))
        return self._outcome(time.perf_counter() - started)

    def _extra_event(self, payload: object) -> None:
        """An :data:`EXTRA_EVENT`; the plain simulation schedules none."""
        raise SimulationError(f"unexpected event {payload!r}")

    def _wake(self) -> None:
        """Something changed: make sure a cycle runs at the next decision time."""
        if self.cycle_at is None:
            interval = self.config.decision_interval_s
            at = self.now if interval <= 0 else math.ceil(self.now / interval) * interval
            self.cycle_at = max(at, self.now)
            self._push(self.cycle_at, _CYCLE, None)

    def _arrive(self, job_id: JobId) -> None:
        job = self.jobs[job_id]
        job.state = JobState.PENDING
        self._refresh_pending(job)
        self.pending[job_id] = job
        self.cluster.watch_dataset(job)
        self._wake()

    def _cycle(self) -> None:
        self.cycle_at = None
        if not self.pending and ((self.moves is None and not self.rounds) or not self.running):
            return
        snapshot = self._snapshot()
        started = time.perf_counter()
        batch = None if self.moves is None else self.moves.batch_round(snapshot)
        if batch is not None:
            decisions = batch
        elif self.cache is None:
            decisions = self.policy(snapshot)
        else:
            cached: Callable[..., list[Decision]] = self.policy
            decisions = cached(snapshot, cache=self.cache)
        if self.moves is not None and batch is None:
            decisions = self.moves.extend(snapshot, decisions)
        self.policy_wall_s += time.perf_counter() - started
        self.cycles += 1
        rounds = (self.rounds or batch is not None) and (self.pending or self.running)
        if not self._apply(decisions) and not rounds:
            return
        interval = self.config.decision_interval_s
        if interval > 0:
            self.cycle_at = self.now + interval
        else:
            self.instant_cycles = self.instant_cycles + 1 if self.instant_at == self.now else 1
            self.instant_at = self.now
            if self.instant_cycles >= MAX_CYCLES_PER_INSTANT:
                return  # wait for the next event rather than spin at one instant
            self.cycle_at = self.now
        self._push(self.cycle_at, _CYCLE, None)

    def _snapshot(self) -> Snapshot:
        return Snapshot(
            now=self.now,
            nodes=tuple(self.cluster.nodes),
            pending=tuple(self.pending_views.values()),
            quotas=self.caps,
            usage=self.cluster.usage_copy(),
            running=self._running_views(),
            queues=self.queues,
            links=self.links,
            chip_speed=self.speed,
            chip_units=self.units,
        )

    def _refresh_pending(self, job: SimJob) -> None:
        """Rebuild a pending job's view (after arrival, preemption or a data change)."""
        job.view = self.cluster.pending_view(job)
        self.pending_views[job.spec.job_id] = job.view

    def _refresh_running(self, job: SimJob) -> None:
        """Rebuild a running job's view and note when it goes stale (next checkpoint)."""
        view = running_view(job, self.now, self.config.cost_model)
        self.running_views[job.spec.job_id] = view
        self.counter += 1
        entry = (job.attempt.view_until, self.counter, job.spec.job_id, job.attempt.index)
        heapq.heappush(self.stale_views, entry)

    def _running_views(self) -> tuple[RunningJob, ...]:
        """The running jobs' views, the stale ones (past a checkpoint) rebuilt first."""
        stale, due = self.stale_views, []
        while stale and stale[0][0] <= self.now:
            due.append(heapq.heappop(stale))
        for _, _, job_id, index in due:
            job = self.running.get(job_id)
            if job is not None and job.attempt.index == index:
                self._refresh_running(job)
        return tuple(self.running_views.values())

    def _apply(self, decisions: Sequence[Decision]) -> bool:
        """Apply a cycle's decisions; True when another cycle should follow.

        It should after a preemption (the freed cards are for a later cycle), a new
        staging, or when the policy left some pending job without a decision. A cycle
        that decided every pending job and only admitted some has nothing left to do.
        The ``Pending`` decisions are kept as the last word on why jobs wait.
        """
        self.last_decisions = decisions
        acting = [d for d in decisions if type(d) is not Pending]
        preempts = [d for d in acting if type(d) is Preempt]
        admits = [d for d in acting if type(d) is Admit]
        stages = [d for d in acting if type(d) is StageDataset]
        undecided = len(decisions) - len(preempts) - len(stages) < len(self.pending)
        for preempt in preempts:
            self._preempt(preempt)
        for admit in admits:
            self._admit(admit)
        staged = [self._stage(stage) for stage in stages]
        return bool(preempts) or any(staged) or (bool(admits) and undecided)

    def _admit(self, decision: Admit) -> None:
        job = self.pending.get(decision.job)
        if job is None:
            raise InvariantViolation(f"the policy admitted job {decision.job}, not pending")
        nodes = self.cluster.check_gang(job, decision)
        region = nodes[0].region
        delay = self.config.restart_delay_s if job.preemptions else 0.0
        if self.config.cost_model is CostModel.FREE:
            delay = 0.0
        data_ready = self.cluster.data_ready_at(job, region, self.now, self._push_staged)
        run_start = max(self.now, data_ready) + delay
        speed = job.spec.speed.get(decision.chip) or self.speed[decision.chip]
        attempt = Attempt(
            job=job.spec.job_id,
            index=len(job.attempts),
            cluster=decision.cluster,
            region=region,
            chip=decision.chip,
            family=decision.family,
            placements=decision.placements,
            cards=job.spec.total_cards,
            admitted_at=self.now,
            run_start=run_start,
            speed=speed,
            expected_end=run_start + job.remaining_s / speed,
        )
        job.attempts.append(attempt)
        self.cluster.allocate(job, attempt)
        del self.pending[job.spec.job_id]
        self.running[job.spec.job_id] = job
        del self.pending_views[job.spec.job_id]
        job.request = job.view
        job.state, job.staging_to, job.view = JobState.RUNNING, None, None
        self._refresh_running(job)
        if job.first_start is None:
            job.first_start = self.now
        self.admissions += 1
        self._push(attempt.expected_end, _COMPLETION, (job.spec.job_id, attempt.index))

    def _push_staged(self, at: float, dataset: str, region: RegionName) -> None:
        self._push(at, _STAGED, (dataset, region))

    def _complete(self, job_id: JobId, index: int) -> None:
        job = self.running.get(job_id)
        if job is None or job.attempt.index != index:
            return  # the attempt was preempted; its completion event is stale
        attempt = job.attempt
        attempt.work_s = job.remaining_s
        job.remaining_s = 0.0
        self._end_attempt(job, "completed")
        job.state, job.end = JobState.COMPLETED, self.now
        self.cluster.unwatch_dataset(job)
        self.finished += 1
        self._wake()

    def _preempt(self, decision: Preempt) -> None:
        job = self.running.get(decision.job)
        if job is None:
            raise InvariantViolation(f"the policy preempted job {decision.job}, not running")
        if not job.spec.preemptible and not self._reclaims_borrowed(decision):
            raise InvariantViolation(
                f"the policy preempted non-preemptible job {decision.job} "
                "(not a cohort member reclaiming borrowed quota)"
            )
        attempt = job.attempt
        if attempt.stopping_for is not None:
            raise InvariantViolation(f"the policy preempted job {decision.job}, already stopping")
        move = decision.for_job == decision.job  # admitted again in this cycle: no grace
        stop = stop_on_preemption(job, self.now, self.config.cost_model, grace=not move)
        if stop.hold_s > 0:
            attempt.stopping_for = decision.for_job
            attempt.view = None
            self._refresh_running(job)
            payload = (job.spec.job_id, attempt.index, self.now, stop)
            self._push(self.now + stop.hold_s, _STOPPED, payload)
            return
        self._requeue(job, self.now, stop.kept_until, decision.reason)

    def _stopped(self, job_id: JobId, index: int, signal_at: float, stop: Stop) -> None:
        """A job preempted with a grace period at ``signal_at`` has written its checkpoint
        (or its grace ran out): its cards free now; the grace counts as overhead."""
        job = self.running.get(job_id)
        if job is None or job.attempt.index != index:
            return  # it completed during its grace
        self.overhead_card_s += (self.now - signal_at) * job.attempt.cards
        self._requeue(job, signal_at, stop.kept_until, f"preempted for {job.attempt.stopping_for}")
        self._wake()

    def _requeue(self, job: SimJob, signal_at: float, kept_until: float, reason: str) -> None:
        """End a preempted attempt (signalled at ``signal_at``) keeping the work it ran
        until ``kept_until``."""
        attempt = job.attempt
        ran = max(0.0, signal_at - attempt.run_start)
        kept = min(ran, max(0.0, kept_until - attempt.run_start))
        attempt.work_s = min(job.remaining_s, kept * attempt.speed)
        attempt.lost_card_s = (ran - kept) * attempt.cards
        job.remaining_s -= attempt.work_s
        self.lost_card_s += attempt.lost_card_s
        self.lost_work_s += (ran - kept) * attempt.speed
        self._end_attempt(job, "preempted")
        job.state, job.reason = JobState.PENDING, reason
        job.preemptions += 1
        self.preemptions += 1
        self._refresh_pending(job)
        self.pending[job.spec.job_id] = job

    def _reclaims_borrowed(self, decision: Preempt) -> bool:
        """Whether ``decision`` stops a non-preemptible job that holds borrowed quota
        (its tenant's non-preemptible work holds more than its nominal quota) for
        another tenant of its cohort: the one case a non-preemptible job may stop."""
        victim = self.running_views[decision.job]
        preemptor = self.jobs.get(decision.for_job)
        theirs = self.queues.get(victim.tenant)
        if preemptor is None or theirs is None or preemptor.spec.tenant == victim.tenant:
            return False
        mine = self.queues.get(preemptor.spec.tenant)
        if mine is None or mine.cohort is None or mine.cohort != theirs.cohort:
            return False
        held = (r for r in self.running_views.values() if r.tenant == victim.tenant)
        return protected_over_nominal(theirs, held, self.units, victim.family)

    def _end_attempt(self, job: SimJob, outcome: str) -> None:
        attempt = job.attempt
        attempt.ended_at, attempt.outcome = self.now, outcome
        idle = min(self.now, attempt.run_start) - attempt.admitted_at
        self.overhead_card_s += idle * attempt.cards
        self.cluster.release(job, attempt)
        del self.running[job.spec.job_id]
        del self.running_views[job.spec.job_id]

    def _stage(self, decision: StageDataset) -> bool:
        """Start (or join) a transfer for a pending job; True if the job's view changed."""
        job = self.pending.get(decision.job)
        if job is None:
            raise InvariantViolation(f"the policy staged data for job {decision.job}, not pending")
        before = job.staging_to
        self.cluster.stage(
            job, decision.source_region, decision.target_region, self.now, self._push_staged
        )
        if job.staging_to == before:
            return False
        self._refresh_pending(job)
        return True

    def _staged(self, dataset: str, region: RegionName) -> None:
        for job in self.cluster.finish_transfer(dataset, region):
            self._refresh_pending(job)
        self._wake()

    def _outcome(self, wall_s: float) -> SimOutcome:
        counters = Counters(
            cycles=self.cycles,
            admissions=self.admissions,
            preemptions=self.preemptions,
            lost_card_s=self.lost_card_s,
            lost_work_s=self.lost_work_s,
            overhead_card_s=self.overhead_card_s,
            bytes_staged=self.cluster.bytes_staged,
            transfers=self.cluster.transfers,
            allocated_card_s=dict(self.cluster.allocated_card_s),
            policy_wall_s=self.policy_wall_s,
            wall_s=wall_s,
        )
        return SimOutcome(
            policy=getattr(self.policy, "__name__", "policy"),
            fleet=self.fleet.name,
            cards_by_chip=self.fleet.cards_by_chip(),
            jobs=job_records(self.jobs.values()),
            attempts=attempt_records(self.jobs.values()),
            counters=counters,
            end_s=self.now,
            settings=self.config.settings(),
        )


def simulate(
    fleet: SimFleet,
    jobs: Sequence[TraceJob],
    policy: Policy,
    config: SimConfig | None = None,
    *,
    quotas: QuotaPlan | None = None,
    policy_name: str | None = None,
    progress: Progress | None = None,
) -> SimOutcome:
    """Replay ``jobs`` on ``fleet`` under ``policy``; see :class:`Simulation`."""
    sim = Simulation(fleet, jobs, policy, config or SimConfig(), quotas)
    outcome = sim.run(progress)
    return replace(outcome, policy=policy_name) if policy_name else outcome
