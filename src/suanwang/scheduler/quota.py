"""Quotas: what each tenant may hold, per chip family and in normalised units.

:class:`QuotaLedger` tracks, within one cycle, the cards (and units) every tenant holds
and answers "may this tenant take ``n`` more cards of this chip?" with a :class:`Verdict`.

Two regimes, per tenant:

- **caps** (tenants without a :class:`~.snapshot.TenantQueue`): ``Snapshot.quotas``
  caps the cards held per family (absent = unlimited); a ``units`` entry caps the
  tenant's normalised units over all families.
- **queues** (Kueue ClusterQueues): per dimension (a family, or :data:`UNITS`) a
  :class:`~.snapshot.FlavorQuota`. ``nominal`` is guaranteed; up to ``borrowing_limit``
  more may come from the cohort; at most ``lending_limit`` of the nominal is lent. The
  cohort may lend ``sum(min(nominal, lending_limit))`` over its members; a member's use
  beyond its guaranteed part (``nominal - lendable``) draws on that pool. A dimension
  absent from the queue may not be used, unless the queue has a :data:`UNITS` quota,
  which then governs every family. Under the ``caps`` policy mode (policies that ignore
  cohorts) a tenant's ``Snapshot.quotas`` entry wins; a tenant with only a queue is
  capped at nominal + borrowing limit (:func:`caps_of`). A tenant's non-preemptible
  running jobs fill its nominal quota first: the borrowed part of its holding is its
  preemptible work's, and only what non-preemptible work holds beyond the nominal quota is
  borrowed by it (``is_borrowing(..., protected=True)``).

Held cards start from the larger of ``Snapshot.usage`` and the tenant's running jobs, so
callers may give either or both. Not here: ordering (``queues.py``), victims
(``preempt.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from suanwang.domain.ids import ChipFamily, ChipName, TenantId
from suanwang.scheduler.policy import QuotaMode
from suanwang.scheduler.running import UNITS as UNITS
from suanwang.scheduler.running import RunningWork
from suanwang.scheduler.snapshot import FlavorQuota, RunningJob, Snapshot, TenantQueue

EPSILON = 1e-9
Dim = tuple[TenantId, ChipFamily]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "may the tenant take these cards?".

    Attributes:
        ok: Yes.
        borrowing: Yes, but beyond the tenant's nominal quota (reclaimable).
        within_nominal: The tenant's own holding stays within nominal: if refused, it is
            the cohort's lending that is short, which reclaim can fix.
        reason: Why not, without the ``quota:`` prefix.
    """

    ok: bool
    borrowing: bool = False
    within_nominal: bool = True
    reason: str = ""


ALLOWED = Verdict(ok=True)


def _over(held: float, guaranteed: float) -> float:
    return max(0.0, held - guaranteed)


def _num(value: float) -> str:
    return f"{value:g}"


def protected_over_nominal(
    queue: TenantQueue,
    running: Iterable[RunningJob],
    chip_units: Mapping[ChipName, float],
    family: ChipFamily,
) -> bool:
    """Whether the non-preemptible jobs among ``running`` (the queue's tenant's, none
    stopping) hold more than its nominal ``family`` (or units) quota, in a cohort: the
    condition under which a cohort member may reclaim one of them. A plain restatement of
    :meth:`QuotaLedger.is_borrowing` with ``protected=True``, for checkers."""
    if queue.cohort is None:
        return False
    held = {family: 0.0, UNITS: 0.0}
    for job in running:
        if not job.preemptible and job.preempted_for is None:
            cards = sum(p.cards for p in job.placements)
            if job.family == family:
                held[family] += cards
            held[UNITS] += cards * chip_units.get(job.chip, 1.0)
    return any(
        dim in queue.quotas and held[dim] > queue.quotas[dim].nominal + EPSILON for dim in held
    )


def caps_of(queue: TenantQueue, families: Iterable[ChipFamily]) -> dict[ChipFamily, float | int]:
    """A queue as plain caps (the ``caps`` mode): nominal + borrowing limit per
    dimension (no limit: no cap), and 0 for the fleet's other families unless a units
    quota governs them."""
    caps: dict[ChipFamily, float | int] = {}
    if UNITS not in queue.quotas:
        caps = {family: 0 for family in families if family not in queue.quotas}
    for dim, quota in queue.quotas.items():
        if quota.borrowing_limit is not None:
            caps[dim] = quota.nominal + quota.borrowing_limit
    return caps


class QuotaLedger:
    """Cards and units held per tenant during one cycle, against caps and queues."""

    def __init__(
        self,
        snapshot: Snapshot,
        mode: QuotaMode = "kueue",
        work: RunningWork | None = None,
        flavors: Iterable[tuple[ChipFamily, ChipName]] | None = None,
    ) -> None:
        self.caps: Mapping[TenantId, Mapping[ChipFamily, float | int]] = snapshot.quotas
        self.queues = dict(snapshot.queues)
        if mode == "caps":
            families = {node.family for node in snapshot.nodes}
            derived = {
                t: caps_of(q, families) for t, q in self.queues.items() if t not in self.caps
            }
            self.caps = {**snapshot.quotas, **derived}
            self.queues = {}
        self.chip_units = snapshot.chip_units
        self.held: dict[Dim, float] = {}
        self.stopping: dict[Dim, float] = {}
        """Held by jobs already preempted (stopping): not borrowed for reclaim's sake."""
        self.protected: dict[Dim, float] = {}
        """Held by non-preemptible running jobs (not stopping): they fill the tenant's
        nominal quota first, so only what they hold beyond it is borrowed by them."""
        self.recent: dict[Dim, float] = {}
        """Held by jobs started at ``now`` or later: not counted in ordering shares."""
        self._checked: dict[tuple[TenantId, ChipFamily, ChipName, int], Verdict] = {}
        self._shares: dict[TenantId, float] = {}
        self.version = 0
        self.scope_versions: dict[str, int] = {}
        self._scopes: dict[TenantId, str] = {}
        self._start_holdings(snapshot, work, flavors)
        self._start = dict(self.held)
        self.capacity: dict[tuple[str, ChipFamily], float] = {}
        self.used: dict[tuple[str, ChipFamily], float] = {}
        for tenant, queue in self.queues.items():
            if queue.cohort is not None:
                for dim, quota in queue.quotas.items():
                    key = (queue.cohort, dim)
                    self.capacity[key] = self.capacity.get(key, 0.0) + _lendable(quota)
                    over = _over(self.held.get((tenant, dim), 0.0), _guaranteed(quota))
                    self.used[key] = self.used.get(key, 0.0) + over

    def _start_holdings(
        self,
        snapshot: Snapshot,
        work: RunningWork | None,
        flavors: Iterable[tuple[ChipFamily, ChipName]] | None,
    ) -> None:
        """Held cards: max(usage, running) per family; units from chips held.
        ``flavors``: the nodes' (family, chip) pairs, when the caller knows them."""
        if work is None:
            work = RunningWork.of(snapshot.running, snapshot.chip_units, {})
        if flavors is None:
            flavors = {(node.family, node.chip) for node in snapshot.nodes}
        family_units: dict[ChipFamily, float] = {}
        for family, chip in flavors:
            units = self.units_per_card(chip)
            family_units[family] = max(family_units.get(family, 0.0), units)
        running: dict[Dim, float] = {}
        for tenant, tenant_work in work.tenants.items():
            self._add((tenant, UNITS), tenant_work.units)
            for family, cards in tenant_work.families.items():
                running[(tenant, family)] = cards
            for part, amount in tenant_work.stopping.items():
                self.stopping[(tenant, part)] = amount
            for part, amount in tenant_work.protected_held.items():
                self.protected[(tenant, part)] = amount
            for part, amount in tenant_work.recent(snapshot.now, self.chip_units).items():
                self.recent[(tenant, part)] = amount
        for tenant, per_family in snapshot.usage.items():
            for family, used in per_family.items():
                extra = used - running.get((tenant, family), 0.0)
                if extra > 0:
                    self._add((tenant, UNITS), extra * family_units.get(family, 1.0))
                    running[(tenant, family)] = float(used)
        for key, held in running.items():
            self._add(key, held)

    def _add(self, dim: Dim, amount: float) -> None:
        self.held[dim] = self.held.get(dim, 0.0) + amount

    def units_per_card(self, chip: ChipName) -> float:
        """Normalised units of one card of ``chip`` (1.0 when the snapshot says nothing)."""
        return self.chip_units.get(chip, 1.0)

    def scope_of(self, tenant: TenantId) -> str:
        """What a tenant's verdicts depend on: its cohort, or the tenant alone (cached:
        queues do not change within a cycle)."""
        scope = self._scopes.get(tenant)
        if scope is None:
            cohort = self.cohort_of(tenant)
            scope = f"cohort:{cohort}" if cohort is not None else f"tenant:{tenant}"
            self._scopes[tenant] = scope
        return scope

    def scope_version(self, tenant: TenantId) -> int:
        """Bumped whenever anything the tenant's verdicts depend on changes."""
        return self.scope_versions.get(self.scope_of(tenant), 0)

    def unlimited(self, tenant: TenantId) -> bool:
        """Whether no quota limits the tenant (no queue, no caps): every :meth:`check`
        without a release allows it, whatever it holds."""
        return tenant not in self.queues and not self.caps.get(tenant)

    def cohort_of(self, tenant: TenantId) -> str | None:
        """The tenant's cohort, or None (no queue, or a standalone queue)."""
        queue = self.queues.get(tenant)
        return None if queue is None else queue.cohort

    def held_cards(self, tenant: TenantId, family: ChipFamily) -> float:
        """Cards of ``family`` (or units) the tenant holds now, this cycle included."""
        return self.held.get((tenant, family), 0.0)

    def request_of(self, family: ChipFamily, chip: ChipName, cards: int) -> dict[ChipFamily, float]:
        """What ``cards`` cards of ``chip`` weigh, per dimension (family and units)."""
        return {family: float(cards), UNITS: cards * self.units_per_card(chip)}

    def charge(self, tenant: TenantId, family: ChipFamily, chip: ChipName, cards: int) -> None:
        """Record that the tenant now holds ``cards`` more (or fewer) cards of ``chip``."""
        for dim, amount in self.request_of(family, chip, cards).items():
            self._move((tenant, dim), amount)

    def stop(
        self,
        tenant: TenantId,
        family: ChipFamily,
        chip: ChipName,
        cards: int,
        *,
        protected: bool = False,
    ) -> None:
        """Record that a job of ``cards`` cards of ``chip`` was preempted: it still holds
        them until it stops, but it no longer makes its tenant a borrower;
        ``protected``: a non-preemptible job (reclaimed)."""
        for dim, amount in self.request_of(family, chip, cards).items():
            self.stopping[(tenant, dim)] = self.stopping.get((tenant, dim), 0.0) + amount
            if protected:
                self.protected[(tenant, dim)] = self.protected.get((tenant, dim), 0.0) - amount

    def _move(self, key: Dim, amount: float) -> None:
        tenant, dim = key
        queue = self.queues.get(tenant)
        quota = None if queue is None else queue.quotas.get(dim)
        self._checked.clear()
        self.version += 1
        scope = self.scope_of(key[0])
        self.scope_versions[scope] = self.scope_versions.get(scope, 0) + 1
        before = self.held.get(key, 0.0)
        self.held[key] = before + amount
        if queue is not None and queue.cohort is not None and quota is not None:
            guaranteed = _guaranteed(quota)
            change = _over(before + amount, guaranteed) - _over(before, guaranteed)
            self.used[(queue.cohort, dim)] += change

    def check(
        self,
        tenant: TenantId,
        family: ChipFamily,
        chip: ChipName,
        cards: int,
        release: Relief | None = None,
    ) -> Verdict:
        """May ``tenant`` take ``cards`` more cards of ``chip``, after ``release``?

        Taking no cards is always allowed, even by a tenant already over its quota.
        """
        if cards <= 0:
            return ALLOWED
        if release is not None:
            return self._check(tenant, family, chip, cards, release)
        key = (tenant, family, chip, cards)
        verdict = self._checked.get(key)
        if verdict is None:
            verdict = self._checked[key] = self._check(tenant, family, chip, cards, NO_RELIEF)
        return verdict

    def _check(
        self, tenant: TenantId, family: ChipFamily, chip: ChipName, cards: int, release: Relief
    ) -> Verdict:
        request = self.request_of(family, chip, cards)
        queue = self.queues.get(tenant)
        if queue is None:
            return self._check_caps(tenant, family, request, release)
        dims = [d for d in (family, UNITS) if d in queue.quotas]
        if not dims:
            return Verdict(
                ok=False, within_nominal=False, reason=f"tenant {tenant} has no {family} quota"
            )
        verdicts = [self._check_dim(queue, d, request[d], release) for d in dims]
        refused = [v for v in verdicts if not v.ok]
        if refused:
            within = all(v.within_nominal for v in refused)
            return Verdict(
                False, within_nominal=within, reason="; ".join(v.reason for v in refused)
            )
        return Verdict(ok=True, borrowing=any(v.borrowing for v in verdicts))

    def _check_caps(
        self,
        tenant: TenantId,
        family: ChipFamily,
        request: Mapping[ChipFamily, float],
        release: Relief,
    ) -> Verdict:
        caps = self.caps.get(tenant, {})
        parts = []
        for dim in (family, UNITS):
            cap = caps.get(dim)
            held = self.held.get((tenant, dim), 0.0) - release.given((tenant, dim))
            if cap is not None and held + request[dim] > cap + EPSILON:
                noun = "units" if dim == UNITS else f"{dim} cards"
                parts.append(f"{_num(held + request[dim])} of {cap} {noun}")
        if parts:
            reason = f"tenant {tenant} would hold " + "; ".join(parts)
            return Verdict(ok=False, within_nominal=False, reason=reason)
        return ALLOWED

    def _check_dim(
        self, queue: TenantQueue, dim: ChipFamily, amount: float, release: Relief
    ) -> Verdict:
        tenant, quota = queue.tenant, queue.quotas[dim]
        held = self.held.get((tenant, dim), 0.0) - release.given((tenant, dim))
        own = held
        within = own + amount <= quota.nominal + EPSILON
        limit = float(quota.nominal)
        if queue.cohort is not None:
            limit = math.inf if quota.borrowing_limit is None else limit + quota.borrowing_limit
        noun = "units" if dim == UNITS else f"{dim} cards"
        if own + amount > limit + EPSILON:
            reason = f"tenant {tenant} would hold {_num(own + amount)} of {_num(limit)} {noun}"
            return Verdict(False, within_nominal=False, reason=reason)
        if queue.cohort is None:
            return Verdict(ok=True)
        after = held + amount
        used = self._cohort_used_after(queue, dim, held, after, release)
        capacity = self.capacity[(queue.cohort, dim)]
        if used > capacity + EPSILON:
            guaranteed = _guaranteed(quota)
            free = capacity - (used - _over(after, guaranteed) + _over(held, guaranteed))
            reason = (
                f"cohort {queue.cohort} has {_num(max(free, 0.0))} of {_num(capacity)} "
                f"lendable {noun} free"
            )
            return Verdict(False, within_nominal=within, reason=reason)
        return Verdict(ok=True, borrowing=not within)

    def _cohort_used_after(
        self, queue: TenantQueue, dim: ChipFamily, held: float, after: float, relief: Relief
    ) -> float:
        """The cohort's lent-out amount of ``dim`` after ``relief`` and the request."""
        assert queue.cohort is not None
        used = self.used[(queue.cohort, dim)] - relief.cohort.get((queue.cohort, dim), 0.0)
        guaranteed = _guaranteed(queue.quotas[dim])
        return used + _over(after, guaranteed) - _over(held, guaranteed)

    def is_borrowing(
        self,
        tenant: TenantId,
        family: ChipFamily,
        release: Relief | None = None,
        *,
        protected: bool = False,
    ) -> bool:
        """Whether the tenant holds more than its nominal ``family`` (or units) quota,
        counting ``release`` and jobs already stopping as given back. Only cohort
        members borrow.

        ``protected``: whether its non-preemptible jobs alone hold more than that. They
        fill the nominal quota first: what the tenant borrows is held by its preemptible
        jobs first, and a non-preemptible job runs on borrowed quota (and may be
        reclaimed) only while this holds.
        """
        queue = self.queues.get(tenant)
        if queue is None or queue.cohort is None:
            return False
        release = release or NO_RELIEF
        for dim in (family, UNITS):
            quota = queue.quotas.get(dim)
            key = (tenant, dim)
            if protected:
                held = self.protected.get(key, 0.0) - release.protected.get(key, 0.0)
            else:
                stopping = self.stopping.get(key, 0.0) - release.stopping.get(key, 0.0)
                held = self.held.get(key, 0.0) - release.given(key) - stopping
            if quota is not None and held > quota.nominal + EPSILON:
                return True
        return False

    def has_quota(self, tenant: TenantId, family: ChipFamily) -> bool:
        """Whether a quota governs the tenant's ``family`` cards: a quota of the family
        or of units, in its cohort queue or as a cap outside a cohort."""
        dims = (family, UNITS)
        queue = self.queues.get(tenant)
        if queue is None:
            caps = self.caps.get(tenant, {})
            return any(dim in caps for dim in dims)
        return any(dim in queue.quotas for dim in dims)

    def guarantees(
        self, tenant: TenantId, family: ChipFamily, release: Relief | None = None
    ) -> bool:
        """Whether the tenant's quota protects its preemptible ``family`` work from other
        tenants' serving replicas: it has a quota for it (:meth:`has_quota`) and does
        not borrow (:meth:`is_borrowing`, counting ``release``; only cohort members
        borrow). A tenant with no quota for the family is not protected."""
        return self.has_quota(tenant, family) and not self.is_borrowing(tenant, family, release)

    def within_nominal(
        self, tenant: TenantId, family: ChipFamily, chip: ChipName, cards: int
    ) -> bool:
        """Whether a cohort member taking ``cards`` of ``chip`` stays within its nominal
        quota on every dimension that governs it: the condition to reclaim."""
        queue = self.queues.get(tenant)
        if queue is None or queue.cohort is None:
            return False
        request = self.request_of(family, chip, cards)
        dims = [d for d in (family, UNITS) if d in queue.quotas]
        return bool(dims) and all(
            self.held.get((tenant, d), 0.0) + request[d] <= queue.quotas[d].nominal + EPSILON
            for d in dims
        )

    def share(self, tenant: TenantId) -> float:
        """Kueue's dominant resource share: the largest borrowed fraction of the cohort's
        lendable quota over the tenant's dimensions, divided by the tenant's weight.

        0 for tenants that borrow nothing or have no cohort. Computed from work that
        started before ``now`` and fixed for the cycle, so that a cycle re-run at the
        same instant orders jobs the same way.
        """
        share = self._shares.get(tenant)
        if share is None:
            share = self._shares[tenant] = self._share(tenant)
        return share

    def _share(self, tenant: TenantId) -> float:
        queue = self.queues.get(tenant)
        if queue is None or queue.cohort is None:
            return 0.0
        share = 0.0
        for dim, quota in queue.quotas.items():
            capacity = self.capacity[(queue.cohort, dim)]
            before_now = self._start.get((tenant, dim), 0.0) - self.recent.get((tenant, dim), 0.0)
            borrowed = _over(before_now, quota.nominal)
            if capacity > 0 and borrowed > 0:
                share = max(share, borrowed / capacity)
        if share == 0.0:
            return 0.0
        return math.inf if queue.weight <= 0 else share / queue.weight

    def refusal(self, tenant: TenantId, verdicts: Iterable[tuple[ChipFamily, Verdict]]) -> str:
        """One ``quota: ...`` reason from the refusals of every family the job could use.

        Example: ``"quota: tenant acme would hold 24 of 16 ascend cards"``.
        """
        reasons: list[str] = []
        for _family, verdict in sorted(verdicts, key=lambda fv: fv[0]):
            if verdict.reason and verdict.reason not in reasons:
                reasons.append(verdict.reason)
        prefix = f"tenant {tenant} would hold "
        if tenant not in self.queues and all(r.startswith(prefix) for r in reasons):
            return "quota: " + prefix + "; ".join(r[len(prefix) :] for r in reasons)
        return "quota: " + "; ".join(reasons)


class Relief:
    """Quota that hypothetical victims give back, kept up to date as victims are added
    and removed, so that a check after it costs the same whatever their number.

    Attributes:
        released: Cards (or units) given back, by (tenant, dimension).
        stopping: The part of ``released`` that stopping jobs give back.
        protected: The part of ``released`` that non-preemptible jobs (not stopping)
            give back.
        cohort: How much less each (cohort, dimension) would have lent out.
    """

    __slots__ = ("cohort", "ledger", "protected", "released", "stopping")

    def __init__(self, ledger: QuotaLedger | None) -> None:
        self.ledger = ledger
        self.released: dict[Dim, float] = {}
        self.stopping: dict[Dim, float] = {}
        self.protected: dict[Dim, float] = {}
        self.cohort: dict[tuple[str, ChipFamily], float] = {}

    def given(self, key: Dim) -> float:
        """What ``key`` gives back."""
        return self.released.get(key, 0.0)

    def add(
        self,
        tenant: TenantId,
        family: ChipFamily,
        chip: ChipName,
        cards: int,
        sign: int = 1,
        *,
        stopping: bool = False,
        protected: bool = False,
    ) -> None:
        """Count a victim of ``cards`` cards of ``chip`` (``sign=-1``: no longer);
        ``stopping``: one that was preempted earlier; ``protected``: a non-preemptible
        one (not stopping)."""
        ledger = self.ledger
        assert ledger is not None, "NO_RELIEF is read-only"
        queue = ledger.queues.get(tenant)
        for dim, amount in ledger.request_of(family, chip, cards).items():
            key = (tenant, dim)
            before = self.released.get(key, 0.0)
            after = before + sign * amount
            self.released[key] = after
            if stopping:
                self.stopping[key] = self.stopping.get(key, 0.0) + sign * amount
            elif protected:
                self.protected[key] = self.protected.get(key, 0.0) + sign * amount
            quota = None if queue is None else queue.quotas.get(dim)
            if queue is not None and queue.cohort is not None and quota is not None:
                held, guaranteed = ledger.held.get(key, 0.0), _guaranteed(quota)
                change = _over(held - before, guaranteed) - _over(held - after, guaranteed)
                slot = (queue.cohort, dim)
                self.cohort[slot] = self.cohort.get(slot, 0.0) + change


NO_RELIEF = Relief(None)
"""Nothing given back."""


def _lendable(quota: FlavorQuota) -> float:
    """What a member may lend to its cohort of one dimension."""
    if quota.lending_limit is None:
        return float(quota.nominal)
    return float(min(quota.lending_limit, quota.nominal))


def _guaranteed(quota: FlavorQuota) -> float:
    """The part of the nominal quota a member never lends."""
    return quota.nominal - _lendable(quota)
