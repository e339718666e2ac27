"""Cluster health: ask each cluster's engine for its capacity, record what it said.

:class:`ClusterHealth` calls :meth:`~suanwang.ports.Backend.capacity` for every cluster
(outside any transaction and several at once: engines answer over the network, within
their own timeouts),
then records in one transaction:

- healthy or not, the reason and when (shown by ``GET /api/v1/clusters`` and
  ``suanwang fleet show``); the scheduler places nothing on an unhealthy cluster, so its
  queued jobs stay queued while other clusters keep admitting
  (:func:`placeable_clusters`);
- for an engine that lists every node (``complete``), fleet nodes it no longer reports are
  drained in suanwang's view (no new work placed on them) and made ready again when they
  come back. Nodes the engine reports that the fleet lacks are left to ``fleet import``.

A cluster whose backend is not installed here is unhealthy with that reason. Nothing here
raises for an engine: a backend that raises from ``capacity`` (it should not) makes its
cluster unhealthy with the error as the reason, and is logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from suanwang.domain.connections import ENGINE_BACKENDS
from suanwang.domain.records import ClusterHealth, ClusterRecord, NodeRecord
from suanwang.ports import Backend, Clock, ClusterCapacity, UnitOfWorkFactory

log = structlog.get_logger("suanwang.health")
READY, DRAINED = "ready", "drained"
MAX_REASON = 500
MAX_PARALLEL = 8


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What one round found: clusters by health, nodes drained and made ready again."""

    unhealthy: dict[str, str]
    healthy: list[str]
    drained: list[str]
    restored: list[str]


def placeable_clusters(clusters: Iterable[ClusterRecord]) -> set[str]:
    """Clusters the scheduler may place work on: not unhealthy, and (engine clusters) checked
    healthy at least once, so nothing is sent to an engine before it was seen to answer."""
    placeable = set()
    for cluster in clusters:
        if cluster.health is None:
            if cluster.backend not in ENGINE_BACKENDS:
                placeable.add(cluster.name)
        elif cluster.health.healthy:
            placeable.add(cluster.name)
    return placeable


class ClusterHealthCheck:
    """Checks every cluster's engine at most once per ``interval_s``."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        backends: Mapping[str, Backend],
        clock: Clock,
        interval_s: float = 30.0,
    ) -> None:
        self._uows = uows
        self._backends = backends
        self._clock = clock
        self._interval_s = interval_s
        self._last_at: float | None = None

    def tick(self) -> HealthReport | None:
        """A round if one is due, or a check of clusters never checked (a cluster applied
        since the last round); None if there was nothing to do."""
        now = self._clock.now()
        if self._last_at is not None and now - self._last_at < self._interval_s:
            with self._uows() as uow:
                new = [c.name for c in uow.fleet.clusters() if c.health is None]
            return self.check(only=set(new)) if new else None
        self._last_at = now
        return self.check()

    def check(self, only: set[str] | None = None) -> HealthReport:
        """Ask every cluster's engine (or those named in ``only``) now; record the answers."""
        with self._uows() as uow:
            clusters = [c for c in uow.fleet.clusters() if only is None or c.name in only]
        answers = self._ask_all(clusters)
        now = self._clock.now()
        report = HealthReport({}, [], [], [])
        with self._uows() as uow:
            nodes_by_cluster: dict[str, list[NodeRecord]] = {}
            for node in uow.fleet.nodes():
                nodes_by_cluster.setdefault(node.cluster, []).append(node)
            for cluster in clusters:
                answer = answers[cluster.name]
                self._record(cluster, answer, now, report)
                uow.fleet.set_health(
                    cluster.name, ClusterHealth(answer.healthy, answer.reason[:MAX_REASON], now)
                )
                if answer.healthy and answer.complete:
                    drain, restore = _node_changes(nodes_by_cluster.get(cluster.name, []), answer)
                    uow.fleet.set_node_states(cluster.name, drain, DRAINED)
                    uow.fleet.set_node_states(cluster.name, restore, READY)
                    report.drained.extend(f"{cluster.name}/{n}" for n in drain)
                    report.restored.extend(f"{cluster.name}/{n}" for n in restore)
            uow.commit()
        if report.drained or report.restored:
            log.warning("nodes drained or restored", drained=report.drained, ready=report.restored)
        return report

    def _ask_all(self, clusters: list[ClusterRecord]) -> dict[str, ClusterCapacity]:
        """Every cluster's answer, asked at once: one slow engine (timing out) does not hold
        the others' answers back."""
        if len(clusters) <= 1:
            return {c.name: self._capacity(c) for c in clusters}
        with ThreadPoolExecutor(min(MAX_PARALLEL, len(clusters)), "cluster-health") as pool:
            return dict(
                zip([c.name for c in clusters], pool.map(self._capacity, clusters), strict=True)
            )

    def _capacity(self, cluster: ClusterRecord) -> ClusterCapacity:
        backend = self._backends.get(cluster.backend)
        if backend is None:
            reason = f"backend {cluster.backend!r} is not installed in this control plane"
            return ClusterCapacity(healthy=False, reason=reason)
        try:
            return backend.capacity(cluster.name, cluster.connection)
        except Exception as exc:
            log.exception("capacity raised; the cluster counts as unhealthy", cluster=cluster.name)
            reason = f"capacity check failed: {type(exc).__name__}: {exc}"
            return ClusterCapacity(healthy=False, reason=reason[:MAX_REASON])

    @staticmethod
    def _record(
        cluster: ClusterRecord, answer: ClusterCapacity, now: float, report: HealthReport
    ) -> None:
        was = cluster.health
        if answer.healthy:
            report.healthy.append(cluster.name)
            if was is not None and not was.healthy:
                log.info("cluster healthy again", cluster=cluster.name)
            return
        report.unhealthy[cluster.name] = answer.reason
        if was is None or was.healthy or was.reason != answer.reason:
            log.warning("cluster unhealthy", cluster=cluster.name, reason=answer.reason, at=now)


def _node_changes(nodes: list[NodeRecord], answer: ClusterCapacity) -> tuple[list[str], list[str]]:
    """Fleet nodes to drain (missing from the engine) and to make ready (back in it).

    If the engine names nodes but none of them is a fleet node, the fleet file names them
    differently (typed by hand, not imported): nothing is drained, and it is logged.
    """
    present = {n.name for n in answer.nodes}
    if present and nodes and present.isdisjoint(n.name for n in nodes):
        log.warning(
            "no fleet node is among the engine's nodes; not draining (fleet import names them)",
            cluster=nodes[0].cluster,
            engine_nodes=sorted(present)[:5],
        )
        return [], []
    drain = [n.name for n in nodes if n.name not in present and n.state == READY]
    restore = [n.name for n in nodes if n.name in present and n.state == DRAINED]
    return drain, restore
