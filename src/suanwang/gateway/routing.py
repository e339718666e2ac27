"""Routing across ready replicas: least outstanding requests with session/prefix affinity.

The replica list comes only from the :class:`~suanwang.ports.ReplicaDirectory` (refreshed
every ``refresh_s``), never from a request. A caller sees public replicas and its own
tenant's. Affinity picks a replica by rendezvous hashing of the request's affinity key
(``user``, else its first message: engines with a prefix cache benefit) unless that replica
has more than ``AFFINITY_SLACK`` requests more in flight than the least loaded one. Each
replica has a circuit breaker (:mod:`.breaker`): engine failures in a row open it for
``eject_s`` (doubling while it keeps failing), then one trial request at a time is let
through; if every replica's breaker is open, they are tried anyway rather than failing.

The router owns each replica's in-flight count: a request holds :meth:`Router.lease` on
its replica while it is sent and answered, and nothing else changes the count. The counts
per deployment and replica (:meth:`Router.inflight`) outlive a replica's removal from the
table, so a replica being drained is reported busy until its last request ends.

Autoscaled deployments are listed too (:meth:`Router.wakeable`), with or without replicas:
a request for one with no ready replica waits for a cold start instead of failing.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog

from suanwang.domain.serving import DeploymentView, ReplicaView
from suanwang.gateway.breaker import Breaker, BreakerState
from suanwang.ports import Clock, ReplicaDirectory

AFFINITY_SLACK = 2
log = structlog.get_logger("suanwang.gateway")


@dataclass(slots=True)
class Slot:
    """A replica and what this process knows about its load and health."""

    replica: ReplicaView
    outstanding: int = 0
    """Requests in flight on this replica from this process (see :meth:`Router.lease`)."""
    breaker: Breaker = field(default_factory=Breaker)


class Router:
    """This process's view of the ready replicas, by model."""

    def __init__(
        self, directory: ReplicaDirectory, clock: Clock, *, refresh_s: float, eject_s: float
    ) -> None:
        self._directory = directory
        self._clock = clock
        self.refresh_s = refresh_s
        self._eject_s = eject_s
        self._slots: dict[str, Slot] = {}
        self._by_model: dict[str, list[Slot]] = {}
        self._starting: dict[str, set[str | None]] = {}
        self._wakeable: dict[str, list[DeploymentView]] = {}
        self._leases: dict[str, dict[str, int]] = {}
        """Requests in flight by deployment, then replica (see :meth:`inflight`)."""
        self.routed_at = 0.0
        """When the replica list now in use started loading (0: never)."""

    async def refresh(self) -> None:
        """Reload the ready replicas (keeping in-flight counts of those still there)."""
        began = self._clock.now()
        replicas = await asyncio.to_thread(self._directory.ready_replicas)
        autoscaled = await asyncio.to_thread(self._directory.autoscaled_deployments)
        self.load(replicas, autoscaled)
        self.routed_at = began

    def load(
        self, replicas: list[ReplicaView], autoscaled: list[DeploymentView] | None = None
    ) -> None:
        wakeable: dict[str, list[DeploymentView]] = {}
        for deployment in autoscaled or ():
            wakeable.setdefault(deployment.model, []).append(deployment)
        self._wakeable = wakeable
        slots: dict[str, Slot] = {}
        by_model: dict[str, list[Slot]] = {}
        starting: dict[str, set[str | None]] = {}
        for replica in replicas:
            if not replica.ready:
                starting.setdefault(replica.model, set()).add(replica.owner_tenant)
                continue
            old = self._slots.get(replica.replica_id)
            slot = Slot(replica, breaker=Breaker(open_s=self._eject_s)) if old is None else old
            slot.replica = replica
            slots[replica.replica_id] = slot
            by_model.setdefault(replica.model, []).append(slot)
        self._slots, self._by_model, self._starting = slots, by_model, starting

    async def run(self) -> None:
        """Refresh forever (a background task of the app)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except OSError as exc:  # database briefly unreachable: keep the last view
                log.warning("replica refresh failed", error=str(exc))

    def visible(self, model: str, tenant: str) -> list[Slot]:
        return [
            s
            for s in self._by_model.get(model, ())
            if s.replica.owner_tenant is None or s.replica.owner_tenant == tenant
        ]

    def deployed(self, model: str, tenant: str) -> bool:
        """Whether ``tenant`` may call a replica of ``model`` that is not ready yet."""
        owners = self._starting.get(model, set())
        return None in owners or tenant in owners

    def wakeable(self, model: str, tenant: str) -> list[str]:
        """Autoscaled deployments of ``model`` that ``tenant`` may call (cold-startable)."""
        return [
            d.deployment_id
            for d in self._wakeable.get(model, ())
            if d.owner_tenant is None or d.owner_tenant == tenant
        ]

    def known_deployments(self) -> set[str]:
        """Every deployment in this process's tables (routed, starting or autoscaled)."""
        known = {s.replica.deployment_id for s in self._slots.values()}
        known.update(d.deployment_id for ds in self._wakeable.values() for d in ds)
        return known

    def inflight(self) -> dict[str, dict[str, int]]:
        """Requests in flight now, by deployment, then replica (a copy)."""
        return {d: dict(by_replica) for d, by_replica in self._leases.items()}

    def models(self, tenant: str) -> list[str]:
        """Models with at least one ready replica ``tenant`` may call."""
        return sorted(m for m in self._by_model if self.visible(m, tenant))

    def pick(self, candidates: list[Slot], affinity: str, exclude: set[str]) -> Slot | None:
        """The replica for the next attempt, or None when every candidate was tried."""
        now = self._clock.now()
        left = [s for s in candidates if s.replica.replica_id not in exclude]
        healthy = [s for s in left if s.breaker.admits(now)] or left
        if not healthy:
            return None
        least = min(s.outstanding for s in healthy)
        key = affinity.encode()
        preferred = max(healthy, key=lambda s: zlib.crc32(key + s.replica.replica_id.encode()))
        if preferred.outstanding <= least + AFFINITY_SLACK:
            return preferred
        return min(healthy, key=lambda s: s.outstanding)

    @contextmanager
    def lease(self, slot: Slot) -> Iterator[Slot]:
        """Count one request in flight on ``slot`` until the block ends, however it ends
        (and hold the breaker's half-open trial if this request is it)."""
        slot.outstanding += 1
        trial = slot.breaker.begin(self._clock.now())
        replica = slot.replica
        by_replica = self._leases.setdefault(replica.deployment_id, {})
        by_replica[replica.replica_id] = by_replica.get(replica.replica_id, 0) + 1
        try:
            yield slot
        finally:
            slot.outstanding -= 1
            if trial:
                slot.breaker.end_trial()
            left = by_replica[replica.replica_id] - 1
            if left:
                by_replica[replica.replica_id] = left
            else:
                del by_replica[replica.replica_id]
                if not by_replica and self._leases.get(replica.deployment_id) is by_replica:
                    del self._leases[replica.deployment_id]

    def failed(self, slot: Slot, reason: str) -> bool:
        """An engine failure on ``slot``; True if its breaker opened (it is ejected)."""
        opened = slot.breaker.failed(self._clock.now())
        if opened:
            log.warning(
                "replica ejected",
                replica=slot.replica.replica_id,
                model=slot.replica.model,
                reason=reason,
                for_s=round(slot.breaker.open_until - self._clock.now(), 3),
            )
        return opened

    def succeeded(self, slot: Slot) -> None:
        """The engine answered (a 2xx, or a 4xx about the request): its breaker closes."""
        slot.breaker.succeeded()

    def state(self, replica_id: str) -> BreakerState | None:
        """The breaker state of a replica this process routes to (None: unknown)."""
        slot = self._slots.get(replica_id)
        return None if slot is None else slot.breaker.state(self._clock.now())
