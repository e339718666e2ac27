"""Training and inference in one pool: the simulator with an autoscaled deployment.

:class:`PoolSimulation` is the trace simulator (:class:`~.engine.Simulation`, the same
scheduler as the control plane) plus one model deployment whose replicas are scheduled jobs
of the same tenant as the training work. Every ``tick_s`` it:

1. serves the interval's arrivals (:mod:`.demand`) on the ready replicas
   (:func:`~.serving.serve`), recording which requests missed the latency target;
2. records each ready replica's own measurement and re-learns the per-chip profiles
   (:func:`~suanwang.domain.slo_placement.learn_profiles`);
3. asks the autoscaler (:func:`~suanwang.domain.autoscaling.decide`) for a replica count,
   every replica counted by its learned weight;
4. adds replicas, each on the chip :func:`~suanwang.domain.slo_placement.choose_chip` picks
   among the chips with a free card (else among all: the scheduler then preempts
   training for it), or drains the lightest ones (those not yet placed first).

A replica is a 1-card job at the deployment's priority, not preemptible, pinned to its chip;
the scheduler admits it before training (priority), preempting preemptible training of the
same tenant with the least work lost since a checkpoint when no card is free. It serves
``cold_start_s`` after it is placed. Training backfills every card replicas leave free.
Drained replicas release their card at once (a drain of in-flight requests takes seconds,
under one tick). Ticks run while the demand day lasts or training work remains; the day
repeats. Results: :class:`PoolRecord` (see :mod:`.pool_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from suanwang.domain.autoscaling import (
    AutoscaleSpec,
    Demand,
    ReplicaCapacity,
    ScaleMemory,
    decide,
)
from suanwang.domain.chips import accepted_selectors
from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.domain.queueing import ServiceModel
from suanwang.domain.slo_placement import (
    ChipOffer,
    ChipProfile,
    ReplicaSample,
    ServingSlo,
    choose_chip,
    learn_profiles,
)
from suanwang.simulator.demand import MINUTES_PER_DAY, DemandDay
from suanwang.simulator.engine import EXTRA_EVENT, SimConfig, Simulation
from suanwang.simulator.fleet import SimFleet
from suanwang.simulator.policies import Policy
from suanwang.simulator.serving import ReferenceReplica, serve
from suanwang.simulator.state import JobState, SimJob
from suanwang.simulator.trace import TraceJob

REPLICA_KIND = "replica"
REPLICA_WORK_S = 1e12
"""A replica's nominal work: it never completes, it is drained."""
SAMPLES_KEPT = 20
"""Most recent samples per chip the learner uses."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """The simulated deployment: how it scales, its SLO and how its replicas serve.

    ``serving_speed`` is each chip's true replica speed relative to a replica on the
    reference chip (what replicas measure); ``priors`` what the learner starts from.
    """

    tenant: TenantId
    autoscale: AutoscaleSpec
    slo: ServingSlo
    replica: ReferenceReplica
    serving_speed: Mapping[ChipName, float]
    priors: Mapping[str, ChipProfile]
    units_per_card: Mapping[ChipName, float]
    priority: int = 500
    tick_s: float = 15.0
    cold_start_s: float = 60.0

    @property
    def service(self) -> ServiceModel:
        """The reference replica's service model, as the serving benchmark measured it
        (what the ``slo_ttft_p95_s`` autoscaling target sizes with)."""
        ref = self.replica
        return ServiceModel(ref.slots, ref.slot_rps, ref.first_token_s)


@dataclass(slots=True)
class Replica:
    """One replica job of the deployment."""

    job_id: JobId
    chip: ChipName
    asked_at: float
    retired: bool = False


@dataclass(slots=True)
class PoolRecord:
    """What the run saw, tick by tick and minute by minute."""

    tick_times: list[float] = field(default_factory=list)
    replicas_asked: list[int] = field(default_factory=list)
    replicas_ready: list[int] = field(default_factory=list)
    minute_requests: dict[int, float] = field(default_factory=dict)
    minute_missed: dict[int, float] = field(default_factory=dict)
    placements: list[tuple[float, str, bool]] = field(default_factory=list)
    """(time, chip, meets the SLO) for every replica added."""
    decisions: list[tuple[float, str]] = field(default_factory=list)
    """(time, reason) of every decision that changed the count."""


class PoolSimulation(Simulation):
    """A trace simulation with one autoscaled deployment sharing the fleet (module doc)."""

    def __init__(
        self,
        fleet: SimFleet,
        training: Sequence[TraceJob],
        policy: Policy,
        config: SimConfig,
        deployment: Deployment,
        demand: DemandDay,
        *,
        day_s: float = MINUTES_PER_DAY * 60.0,
        max_s: float = 14 * MINUTES_PER_DAY * 60.0,
    ) -> None:
        """Set up the simulation; the first tick is at t = 0. Ticks stop after ``day_s``
        once training is done, and after ``max_s`` in any case (training that can never
        be placed ends unschedulable)."""
        super().__init__(fleet, training, policy, config)
        self.deployment = deployment
        self.demand = demand
        self.day_s = day_s
        self.max_s = max_s
        self.replicas: dict[JobId, Replica] = {}
        self.memory = ScaleMemory()
        self.backlog = 0.0
        self.last_request_at: float | None = None
        self.samples: dict[str, list[ReplicaSample]] = {}
        self.profiles: dict[str, ChipProfile] = dict(deployment.priors)
        self.record = PoolRecord()
        self.training_ids = frozenset(j.job_id for j in training)
        self._push(0.0, EXTRA_EVENT, None)

    def _extra_event(self, _payload: object) -> None:
        self._tick()
        next_at = self.now + self.deployment.tick_s
        if next_at < self.day_s or (next_at < self.max_s and self._training_left()):
            self._push(next_at, EXTRA_EVENT, None)
        else:
            for replica in self._live():
                self._retire(replica)

    def _training_left(self) -> bool:
        return any(self.jobs[j].state is not JobState.COMPLETED for j in self.training_ids)

    def _tick(self) -> None:
        dep = self.deployment
        minute = int(self.now // 60)
        rate = self.demand.rate_at(minute)
        ready = self._ready()
        weights = [dep.serving_speed[r.chip] for r in ready]
        served = serve(dep.replica, weights, rate, self.backlog, dep.tick_s, dep.slo.ttft_p95_s)
        self.backlog = served.backlog
        requests = rate * dep.tick_s
        self.record.minute_requests[minute] = self.record.minute_requests.get(minute, 0) + requests
        missed = self.record.minute_missed.get(minute, 0.0) + requests * served.miss_share
        self.record.minute_missed[minute] = missed
        if rate > 0:
            self.last_request_at = self.now
        self._learn(ready)
        demand = Demand(
            at=self.now,
            inflight=served.inflight,
            queued=served.queued,
            tokens_per_s=rate * dep.replica.tokens_per_request,
            ttft_p95_s=served.p95_ttft_s,
            last_request_at=self.last_request_at,
            requests_per_s=rate,
        )
        live = self._live()
        current = [ReplicaCapacity(r.chip, self._weight(r.chip)) for r in live]
        decision = decide(dep.autoscale, current, demand, self.memory, self.now, dep.service)
        self.memory = decision.memory
        if decision.replicas > len(live):
            self._add(decision.replicas - len(live))
        elif decision.replicas < len(live):
            self._drain(live, len(live) - decision.replicas)
        if decision.replicas != len(live):
            self.record.decisions.append((self.now, decision.reason))
        self.record.tick_times.append(self.now)
        self.record.replicas_asked.append(decision.replicas)
        self.record.replicas_ready.append(len(ready))

    def _live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if not r.retired]

    def _ready(self) -> list[Replica]:
        """Replicas placed at least ``cold_start_s`` ago."""
        ready = []
        for replica in self._live():
            job = self.jobs[replica.job_id]
            if job.state is JobState.RUNNING:
                started = job.attempt.run_start
                if self.now >= started + self.deployment.cold_start_s:
                    ready.append(replica)
        return ready

    def _weight(self, chip: str) -> float:
        profile = self.profiles.get(chip)
        return profile.weight if profile is not None else 1.0

    def _learn(self, ready: Sequence[Replica]) -> None:
        """Each ready replica's own measurement: its first-token time, decode speed and
        capacity at its chip's true speed."""
        if not ready:
            return
        dep = self.deployment
        ref = dep.replica
        for replica in ready:
            speed = dep.serving_speed[replica.chip]
            sample = ReplicaSample(
                chip=replica.chip,
                ttft_p95_s=ref.first_token_s / speed,
                tokens_per_s_per_request=ref.max_tokens_per_s / ref.slots * speed,
                requests_per_s=ref.max_rps * speed,
            )
            kept = self.samples.setdefault(replica.chip, [])
            kept.append(sample)
            del kept[:-SAMPLES_KEPT]
        measured = [s for chip_samples in self.samples.values() for s in chip_samples]
        self.profiles = learn_profiles(dep.priors, ref.max_rps, measured)

    def _add(self, count: int) -> None:
        for _ in range(count):
            choice = choose_chip(self.deployment.slo, self.profiles, self._offers())
            if choice is None:
                return
            self.record.placements.append((self.now, choice.chip, choice.meets_slo))
            self._submit(ChipName(choice.chip))

    def _offers(self) -> list[ChipOffer]:
        """Chips with a card nobody holds or waits for; else chips where preemptible
        training holds a card no waiting replica has claimed yet; else none."""
        free: dict[ChipName, int] = {}
        for node in self.cluster.nodes:
            free[node.chip] = free.get(node.chip, 0) + node.cards_free
        for replica in self._live():
            if self.jobs[replica.job_id].state is JobState.PENDING:
                free[replica.chip] = free.get(replica.chip, 0) - 1
        chips = [c for c, n in free.items() if n > 0]
        if not chips:
            for job in self.running.values():
                if job.spec.preemptible and not job.spec.serving:
                    chip = job.attempt.chip
                    free[chip] = free.get(chip, 0) + job.attempt.cards
            chips = [c for c, n in free.items() if n > 0]
        units = self.deployment.units_per_card
        return [ChipOffer(c, units[c]) for c in sorted(chips) if c in units]

    def _submit(self, chip: ChipName) -> None:
        job_id = JobId(f"replica-{len(self.replicas):05d}")
        spec = TraceJob(
            job_id=job_id,
            tenant=self.deployment.tenant,
            submit_s=self.now,
            cards=1,
            duration_s=REPLICA_WORK_S,
            priority=self.deployment.priority,
            chips=(chip,),
            kind=REPLICA_KIND,
            preemptible=False,
            serving=True,
        )
        chips = accepted_selectors(spec.chips)
        self.jobs[job_id] = SimJob(spec, len(self.jobs), chips, REPLICA_WORK_S)
        self.replicas[job_id] = Replica(job_id, chip, self.now)
        self._arrive(job_id)

    def _drain(self, live: Sequence[Replica], count: int) -> None:
        """Drain ``count`` replicas: unplaced ones first, then the lightest, newest first."""

        def order(replica: Replica) -> tuple[bool, float, float]:
            placed = self.jobs[replica.job_id].state is JobState.RUNNING
            return (placed, self._weight(replica.chip), -replica.asked_at)

        for replica in sorted(live, key=order)[:count]:
            self._retire(replica)
        self._wake()

    def _retire(self, replica: Replica) -> None:
        job = self.jobs[replica.job_id]
        replica.retired = True
        if job.state is JobState.PENDING:
            del self.pending[job.spec.job_id]
            del self.pending_views[job.spec.job_id]
        elif job.state is JobState.RUNNING:
            job.attempt.work_s = 0.0
            self._end_attempt(job, "drained")
        job.remaining_s = 0.0
        job.state, job.end = JobState.COMPLETED, self.now
