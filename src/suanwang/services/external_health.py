"""Health checks of external endpoints: probe each one, record ready or unhealthy.

Like the engines' health checker (``services/replicas.py``), the network half runs outside
any transaction: one short read, all probes at once with a bounded timeout, then one write.
``models`` checks send the endpoint's credential (opened from the ``SecretBox`` just for
the probe); ``health`` checks send nothing.
"""

from __future__ import annotations

from suanwang.domain.changes import UNCHANGED
from suanwang.domain.deployments import UNHEALTHY_AFTER, ReplicaChange, ReplicaRecord, after_probe
from suanwang.domain.external import ExternalEndpoint, HealthCheck
from suanwang.domain.serving import ReplicaState
from suanwang.ports import Clock, EndpointProbe, ProbeTarget, SecretBox, UnitOfWorkFactory

PROBE_INTERVAL_S = 5.0
PROBING = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.UNHEALTHY)


class ExternalHealth:
    """Probes external endpoints' replicas, each at most every ``interval_s``."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        box: SecretBox,
        probe: EndpointProbe,
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._uows, self._clock, self._box, self._probe = uows, clock, box, probe
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._misses: dict[str, int] = {}

    def check(self, endpoints: list[tuple[ExternalEndpoint, ReplicaRecord]]) -> None:
        now = self._clock.now()
        due = [
            (e, r)
            for e, r in endpoints
            if r.state in PROBING and now - self._last.get(r.id, 0.0) >= self._interval_s
        ]
        if not due:
            return
        results = self._probe.reachable([self._target(e, r) for e, r in due])
        with self._uows() as uow:
            current = {r.id: r for r in uow.deployments.replicas()}
            for _, r in due:
                self._last[r.id] = now
                fresh = current.get(r.id)
                if fresh is None or fresh.state not in PROBING or fresh.base_url != r.base_url:
                    continue  # removed, or moved to another URL while we probed
                healthy = results.get(r.id, False)
                misses = 0 if healthy else self._misses.get(r.id, 0) + 1
                self._misses[r.id] = misses
                state = after_probe(fresh.state, healthy, misses)
                uow.deployments.update_replica(r.id, _probed(fresh, state, healthy, misses, now))
            uow.commit()

    def _target(self, endpoint: ExternalEndpoint, replica: ReplicaRecord) -> ProbeTarget:
        headers: tuple[tuple[str, str], ...] = ()
        if endpoint.health is HealthCheck.MODELS and endpoint.sealed_credential is not None:
            token = self._box.open(endpoint.sealed_credential)
            headers = (("authorization", f"Bearer {token}"),)
        return ProbeTarget(replica.id, probe_url(replica.base_url, endpoint.health), headers)


def probe_url(base_url: str, health: HealthCheck) -> str:
    """Where ``health`` is checked: ``<root>/health`` or ``<base>/v1/models``."""
    root = base_url.rstrip("/").removesuffix("/v1")
    return root + health.path()


def _probed(
    replica: ReplicaRecord, state: ReplicaState, healthy: bool, misses: int, now: float
) -> ReplicaChange:
    if state is replica.state:
        return ReplicaChange(last_health_at=now)
    reason = "endpoint answers" if healthy else f"{misses} health checks failed in a row"
    if state is ReplicaState.UNHEALTHY:
        reason += f" (unhealthy after {UNHEALTHY_AFTER})"
    return ReplicaChange(
        last_health_at=now,
        state=state,
        reason=reason,
        ready_at=now if state is ReplicaState.READY else UNCHANGED,
    )
