"""One scheduling cycle: :func:`cycle` turns a :class:`Snapshot` into decisions.

The cycle considers pending jobs in the policy's order (``queues.py``). For each job it
finds the eligible (cluster, chip) pools (selector, pins, data reachability), asks the
quota ledger which it may use (``quota.py``), and then, in this order:

1. admits it on the best pool that fits now (``placement.py``, gang fit in ``fit.py``),
   unless waiting for a faster pool or staging data elsewhere finishes sooner;
2. else preempts lower-priority or borrowed work for it (``preempt.py``), without
   admitting it yet: it starts in a later cycle, once the victims have stopped;
3. else reserves a pool for it (EASY backfill, ``backfill.py``) or, under strict FIFO,
   blocks later jobs from its pools, and leaves it pending with a reason.

Kueue order: jobs that can start within their tenant's nominal quota go first; a job
that could only start by borrowing is deferred to a second pass over the queue (with
every later job of its tenant, which keeps each tenant's own order), and
borrowing is refused in a family where a job of the cohort within its nominal quota waits
and reclaim could serve it.

Pure: no I/O, no clock, no randomness (the tie-break draw of ``placement.py`` is a hash
of the job id), no state kept between calls. Without queues,
running jobs, speeds or datasets in the snapshot, every policy with ``priority``
ordering and ``best_fit`` behaves like plain priority + FIFO with best-fit gangs.
"""

from __future__ import annotations

from collections.abc import Iterable

from suanwang.domain.chips import ANY_CHIP
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.decisions import Admit, Decision, Pending, Preempt, StageDataset
from suanwang.scheduler.fit import Pool, fits_free
from suanwang.scheduler.inert import InertFilter, PendingMemo, token
from suanwang.scheduler.passes import job_passes
from suanwang.scheduler.placement import Option, options, pick_later, pick_now
from suanwang.scheduler.policy import SUANWANG, Policy
from suanwang.scheduler.preempt import Plan, plan_preemption, serving_outranks
from suanwang.scheduler.queues import overdue
from suanwang.scheduler.quota import Verdict
from suanwang.scheduler.snapshot import PendingJob, RunningJob, Snapshot
from suanwang.scheduler.state import CycleState, QuotaView

NO_ELIGIBLE_CLUSTER = "no eligible cluster"
Allowed = list[tuple[Pool, Verdict]]


def cycle(
    snapshot: Snapshot, policy: Policy = SUANWANG, cache: CycleCache | None = None
) -> list[Decision]:
    """Decide, for every pending job, whether it starts now, where, and at whose cost.

    Args:
        snapshot: Nodes with their free cards, pending and running jobs, quotas, usage,
            links and chip speeds.
        policy: The rules to apply (see :data:`~.policy.POLICIES`).
        cache: Pools carried over from the caller's previous cycle (:mod:`~.cache`);
            it changes the cost of a cycle, never its decisions.

    Returns:
        Per pending job, in the order considered: an :class:`Admit`; or a
        :class:`Pending` with a reason, preceded by the :class:`Preempt` decisions made
        for it or the :class:`StageDataset` that moves its data. Admissions never
        over-allocate a node nor exceed a quota, counting earlier decisions of the cycle.
        Beyond ``Tuning.max_pending_reports`` plain Pendings, jobs that can change
        nothing this cycle get no decision (see :mod:`~.inert`); after
        ``Tuning.max_admissions_per_cycle`` admissions, no later job gets one.
    """
    st = CycleState.of(snapshot, policy, cache)
    decisions: list[Decision] = []
    inert, memo, cap = InertFilter(), PendingMemo(), policy.tuning.max_pending_reports
    reports = admitted = 0
    passes = job_passes(st)
    for final in (False, True):
        for job in passes.jobs(final):
            if admitted >= policy.tuning.max_admissions_per_cycle:
                return decisions
            if reports >= cap and inert.is_inert(job, st, final):
                if inert.parkable(job, st, final):
                    passes.park(job, token(st))
                continue
            shape = memo.shape(job, st, final)
            memoised = memo.get(shape, job, st)
            if memoised is not None:
                decisions.append(memoised)
                reports += 1
                continue
            before = (st.epoch, st.preemption_attempts)
            outcome = _decide(job, st, final=final)
            if outcome is not None:
                memo.put(shape, before, outcome, st, job)
            if outcome is None:
                passes.defer(job)
                continue
            decisions.extend(outcome)
            reports += len(outcome) == 1 and type(outcome[0]) is Pending
            admitted += type(outcome[-1]) is Admit
    return decisions


def _decide(job: PendingJob, st: CycleState, *, final: bool) -> list[Decision] | None:
    """The decisions for one job, or None to defer it to the borrowing pass."""
    problem = request_problem(job)
    if problem:
        return [Pending(job.id, problem, "invalid")]
    pools = eligible = st.eligible(job)
    if not pools:
        return [Pending(job.id, NO_ELIGIBLE_CLUSTER, "no_match")]
    if not final and st.floor is not None and _defer_for_floor(job, st):
        return None  # over its fair share: after the tenants below theirs
    if st.policy.data_aware and job.dataset is not None:
        pools, waiting = _data_pools(job, pools, st)
        if waiting is not None:
            return [waiting]
    view = st.quota_view(job, pools, cache=pools is eligible)
    if not view.allowed:
        return _quota_blocked(job, view, st)
    borrowing = view.nominal is not view.allowed
    allowed = view.allowed if final else view.nominal
    if st.policy.strict_fifo:
        free = [(p, v) for p, v in allowed if st.blocked.get(p.key, job.id) == job.id]
        if allowed and not free:
            blocker = st.blocked[allowed[0][0].key]
            return [Pending(job.id, f"waiting behind job {blocker} (strict FIFO)", "blocked")]
        allowed = free
    return _place(job, allowed, view, st, defer=not final and borrowing)


def _defer_for_floor(job: PendingJob, st: CycleState) -> bool:
    """The fair-share floor's order (:meth:`~.floor.ShareFloor.defers`); never for an
    overdue job, which the starvation guard puts first whatever its tenant's share."""
    assert st.floor is not None
    return st.floor.defers(job) and not overdue(job, st.now, st.policy)


def _place(
    job: PendingJob, allowed: Allowed, view: QuotaView, st: CycleState, *, defer: bool
) -> list[Decision] | None:
    """Admit, stage, wait for a faster pool, or fall through to :func:`_blocked`."""
    pools = [p for p, _v in allowed]
    data_bound = st.policy.data_aware and job.dataset is not None
    later: Option | None = None
    if data_bound or (st.fits_somewhere(job) and _fits_now(job, pools, st)):
        found = options(job, allowed, st)
        now_choice = pick_now(job, found, st)
        later = pick_later(job, found, now_choice, st)
        if later is not None and not later.local:
            return _stage(job, later)
        if later is not None and now_choice is not None and later.local:
            if not st.reserve(job, later.pool):
                st.wait_for(job, later.pool)
            return [Pending(job.id, _faster_reason(later, now_choice), "capacity")]
        if now_choice is not None:
            chosen = now_choice.pool.choose(job.cards_per_node, job.nodes, now_choice.exclude)
            assert chosen is not None, "a fitting option always has nodes"
            return [st.admit(job, now_choice.pool, chosen, now_choice.verdict)]
    if defer:
        _mark_lender_waiting(job, view, pools, st)
        return None
    return _blocked(job, allowed, view, later, st)


def _fits_now(job: PendingJob, pools: list[Pool], st: CycleState) -> bool:
    """Whether the gang fits one of ``pools`` now without delaying a reservation."""
    per_node, nodes, reservations = job.cards_per_node, job.nodes, st.reservations
    for p in pools:
        if fits_free(p, per_node, nodes) and (
            p.key not in reservations or p.fits(per_node, nodes, st.exclusion(job, p))
        ):
            return True
    return False


def _blocked(
    job: PendingJob, allowed: Allowed, view: QuotaView, later: Option | None, st: CycleState
) -> list[Decision]:
    """Nothing fits now: preempt, or reserve (backfill) / block (strict FIFO), and wait."""
    pools = [p for p, _v in allowed]
    capable = st.capable(job)
    reason = waiting_reason(job, [p for p in pools if p.key in capable])
    if reason.startswith("too large"):
        if any(p.key in capable for p in view.refused):
            return _quota_blocked(job, view, st)
        return [Pending(job.id, reason, "too_large")]
    if later is None and st.policy.backfill:
        reservable = [(p, v) for p, v in allowed if p.key not in st.reservations]
        if reservable:
            later = pick_later(job, options(job, reservable, st), None, st)
    preempted = _preempt(job, [p for p, _v in view.verdicts], view, st, waiting=later)
    if preempted is not None:
        return preempted
    _mark_lender_waiting(job, view, pools, st)
    if later is not None and later.local and st.reserve(job, later.pool):
        reason += f"; reserved on {later.pool.key.cluster} from t={later.start:.0f}"
    if st.policy.strict_fifo:
        for pool in pools:
            st.block(pool, job)
        st.book_quota(job, next(p for p in pools if p.key in capable))
    return [Pending(job.id, reason, "capacity")]


def _quota_blocked(job: PendingJob, view: QuotaView, st: CycleState) -> list[Decision]:
    """No pool is allowed by quota: preempt own or borrowed work if that helps, or wait."""
    preempted = _preempt(job, [p for p, _v in view.verdicts], view, st)
    if preempted is not None:
        return preempted
    _mark_lender_waiting(job, view, view.refused, st, quota_blocked=True)
    refused = [(p.key.family, v) for p, v in view.verdicts if not v.ok]
    return [Pending(job.id, view.refusal or st.ledger.refusal(job.tenant, refused), "quota")]


def _preempt(
    job: PendingJob,
    pools: list[Pool],
    view: QuotaView,
    st: CycleState,
    waiting: Option | None = None,
) -> list[Decision] | None:
    """Preempt for ``job`` on one of ``pools``, or None when no plan exists.

    Only pools that hold the job's data qualify (no preemption for a remote start). Under
    heterogeneity a plan is dropped when ``waiting`` (a reservation the job can hold)
    finishes sooner than starting now on the plan's pool: the same comparison that makes
    a job wait for a fast pool rather than start on a slow one.
    """
    policy, victims = st.policy, st.victims
    if not policy.preemption or not pools:
        return None
    if st.preemption_attempts >= policy.tuning.max_preemption_attempts and not job.serving:
        return None  # a production replica's search is never capped
    reclaim = any(p.key.family in view.within for p in pools)
    if not victims.could_serve(job, reclaim, st.floor):
        return None
    dataset = job.dataset if policy.data_aware else None
    if dataset is not None:
        pools = [p for p in pools if p.key.region in dataset.replicas]
    candidates = victims.candidates(job, st.ledger, reclaim, st.floor)
    if not candidates:
        return None
    st.preemption_attempts += 1
    targets = [(p, st.exclusion(job, p)) for p in pools]
    limit = policy.tuning.max_victim_candidates
    plan = plan_preemption(job, targets, candidates, st.ledger, limit, st.floor)
    if plan is None and st.floor is not None and st.floor.may_serve(job):
        st.floor.failed.add(job.tenant)  # its later jobs need not search again this cycle
    if plan is None or (not job.serving and _sooner_by_waiting(job, plan, waiting, st)):
        return None
    decisions = _preemption_decisions(job, plan, st)
    st.claim(job, plan)
    return decisions


def _sooner_by_waiting(job: PendingJob, plan: Plan, waiting: Option | None, st: CycleState) -> bool:
    """Whether waiting for a reservation beats starting now after the preemption."""
    if waiting is None or not waiting.local or not st.policy.heterogeneity:
        return False
    run_s = st.run_s(job, plan.pool.key.chip) or 0.0
    return waiting.completion < st.now + run_s


def _unprotected(running: RunningJob, job: PendingJob, st: CycleState) -> str:
    """Why a replica may stop another tenant's job: its quota does not protect it."""
    if running.tenant == job.tenant:
        return ""
    if st.ledger.has_quota(running.tenant, running.family):  # so it borrows
        return f"; tenant {running.tenant} borrows {running.family} quota"
    return f"; tenant {running.tenant} has no {running.family} quota"


def _preemption_decisions(job: PendingJob, plan: Plan, st: CycleState) -> list[Decision]:
    """One :class:`Preempt` per new victim, then the preemptor's :class:`Pending`."""
    key = plan.pool.key
    cards = job.cards_per_node * job.nodes
    decisions: list[Decision] = []
    for victim in plan.victims:
        if victim.stopping:
            continue
        running = victim.job
        if serving_outranks(job, running):
            why = (
                f"serving: production replica job {job.id} (priority {job.priority}) needs "
                f"{cards} {key.chip} cards on {key.cluster}; this job has priority "
                f"{running.priority}{_unprotected(running, job, st)}"
            )
        elif running.tenant == job.tenant:
            why = (
                f"priority: job {job.id} (priority {job.priority}) needs {cards} {key.chip} "
                f"cards on {key.cluster}; this job has priority {running.priority}"
            )
        elif st.ledger.is_borrowing(running.tenant, running.family):
            why = (
                f"reclaim: tenant {job.tenant} needs its nominal {running.family} quota, "
                f"lent to tenant {running.tenant}, for job {job.id}"
            )
        else:
            why = (
                f"fair share: tenant {job.tenant} holds less than its fair share and job "
                f"{job.id} needs {cards} {key.chip} cards; tenant {running.tenant} holds more"
            )
        decisions.append(Preempt(running.id, job.id, why, victim.lost_work_s))
    fresh = len(decisions)
    if fresh:
        reason = f"preempting {fresh} job(s) to start on {key.cluster} ({key.chip})"
    else:
        reason = f"waiting for {len(plan.victims)} preempted job(s) to stop on {key.cluster}"
    decisions.append(Pending(job.id, reason, "preempting"))
    return decisions


def _data_pools(
    job: PendingJob, pools: tuple[Pool, ...], st: CycleState
) -> tuple[tuple[Pool, ...], Pending | None]:
    """Pools the job's data can reach (the staging region's once staged), or a wait."""
    dataset = job.dataset
    assert dataset is not None
    if job.staging_to is not None:
        if job.staging_to not in dataset.replicas:
            reason = f"waiting for dataset {dataset.name} to reach {job.staging_to}"
            return (), Pending(job.id, reason, "staging")
        there = tuple(p for p in pools if p.key.region == job.staging_to)
        pools = there or pools
    reachable = tuple(p for p in pools if st.data.transfer(dataset, p.key.region) is not None)
    if not reachable:
        reason = f"{NO_ELIGIBLE_CLUSTER} can reach dataset {dataset.name}"
        return (), Pending(job.id, reason, "no_match")
    return reachable, None


def _mark_lender_waiting(
    job: PendingJob,
    view: QuotaView,
    pools: Iterable[Pool],
    st: CycleState,
    *,
    quota_blocked: bool = False,
) -> None:
    """Refuse borrowing, for the rest of the cycle, of the families this job waits for
    within its nominal quota (see :meth:`CycleState.lender_waits`). Not for a job that
    booked a preemption: its cards and quota are held already."""
    for cohort, family in st.lender_waits(job, view, pools, quota_blocked=quota_blocked):
        st.mark_lender_waiting(cohort, family)


def _stage(job: PendingJob, option: Option) -> list[Decision]:
    """Move the job's dataset to the option's region first; the job waits for it."""
    dataset, transfer = job.dataset, option.transfer
    assert dataset is not None
    assert transfer is not None
    region = option.pool.key.region
    stage = StageDataset(
        job.id, dataset.name, transfer.source, region, dataset.size_bytes, transfer.seconds
    )
    reason = (
        f"staging dataset {dataset.name} from {transfer.source} to {region} "
        f"(about {transfer.seconds:.0f} s)"
    )
    return [stage, Pending(job.id, reason, "staging")]


def _faster_reason(later: Option, now_choice: Option) -> str:
    """Why a job waits although it could start now on a slower chip."""
    fast, slow = later.pool.key, now_choice.pool.key
    return (
        f"waiting for faster {fast.chip} cards on {fast.cluster}: expected to finish at "
        f"t={later.completion:.0f}, not t={now_choice.completion:.0f} on {slow.chip} now"
    )


def request_problem(job: PendingJob) -> str | None:
    """Why the job's request can never be placed as asked, or None if it is well formed."""
    if job.nodes < 1:
        return f"invalid request: {job.nodes} nodes (need at least 1)"
    if job.cards_per_node < 0:
        return f"invalid request: {job.cards_per_node} cards per node"
    if job.cards_per_node == 0 and not job.simulated:
        return "invalid request: a real job needs at least 1 card per node"
    return None


def waiting_reason(job: PendingJob, pools: Iterable[Pool]) -> str:
    """Why a job with eligible, quota-allowed ``pools`` does not fit any of them now.

    Examples: ``"waiting for 16 free ascend-910b cards on 2 nodes (8 per node)"``, or
    ``"too large: no eligible cluster has 4 ascend nodes with 8 cards"`` when even empty
    nodes would not do.
    """
    per_node, nodes = job.cards_per_node, job.nodes
    label = "" if job.chips == (ANY_CHIP,) else f"{' or '.join(job.chips)} "
    if all(p.count_capable(per_node) < nodes for p in pools):
        noun = "node" if nodes == 1 else "nodes"
        return f"too large: no eligible cluster has {nodes} {label}{noun} with {per_node} cards"
    if nodes == 1:
        return f"waiting for {per_node} free {label}cards on 1 node"
    total = per_node * nodes
    return f"waiting for {total} free {label}cards on {nodes} nodes ({per_node} per node)"
