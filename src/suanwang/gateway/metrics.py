"""The gateway's Prometheus metrics, served on its ``GET /metrics``.

Labels are bounded and never secret: ``route`` is one of the gateway's routes, ``model`` a
catalogue model name (anything else a caller typed is ``other``), ``status`` the HTTP
status, ``kind`` a limit field (``key.rpm``, ``tenant.token_quota`` …), ``replica`` a
replica id. No key, key id or tenant appears in any label.

Cost: the labelled children are cached in plain dicts, so a request costs a few
dictionary look-ups and ``inc``/``observe`` calls (see docs/gateway.md, Metrics).

Several worker processes (``suanwang gateway --workers N``): when
``PROMETHEUS_MULTIPROC_DIR`` is set before the workers start (the command does it), every
worker writes its values to files there and any worker's ``/metrics`` answers the sum over
all workers (``prometheus_client``'s multiprocess mode). Without it, each process answers
for itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600)


class GatewayMetrics:
    """Counters and histograms of one gateway process (a registry of its own)."""

    def __init__(self, models: Iterable[str] = (), multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: default ``PROMETHEUS_MULTIPROC_DIR`` (which prometheus_client
        also reads, at import, to choose where values live)."""
        self._models = frozenset(models)
        self._multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "suanwang_gateway_requests",
            "Gateway requests by route, model and HTTP status",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "suanwang_gateway_request_seconds",
            "Gateway request latency, until the last byte (streams included)",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "suanwang_gateway_tokens",
            "Billed tokens by model and direction (in: prompt, out: completion)",
            ["model", "direction"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "suanwang_gateway_upstream_errors",
            "Engine failures seen by the gateway (connect, 5xx, timeout)",
            ["model", "reason"],
            registry=r,
        )
        self.failovers = Counter(
            "suanwang_gateway_failovers",
            "Retries of a request on another replica after a failure",
            ["model"],
            registry=r,
        )
        self.rejections = Counter(
            "suanwang_gateway_limit_rejections",
            "Requests refused by a rate limit or the token quota",
            ["kind"],
            registry=r,
        )
        self.ejections = Counter(
            "suanwang_gateway_replica_ejections",
            "Replicas taken out of rotation after a failure",
            ["model", "replica"],
            registry=r,
        )
        self.refusals = Counter(
            "suanwang_gateway_engine_refusals",
            "Requests an engine refused as the caller's error (400 to the caller, no ejection)",
            ["model", "code"],
            registry=r,
        )
        self._by_request: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._by_tokens: dict[str, tuple[Counter, Counter]] = {}

    def model(self, name: str) -> str:
        """``name`` if it is a catalogue model, "" for none, else ``other`` (callers type
        anything, keys included)."""
        return name if name in self._models or not name else OTHER

    def request(self, route: str, model: str, status: int, seconds: float) -> None:
        label = model if model in self._models or not model else OTHER  # bounded keys too
        key = (route, label, status)
        children = self._by_request.get(key)
        if children is None:
            children = (
                self.requests.labels(route, label, str(status)),
                self.latency.labels(route, label),
            )
            self._by_request[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def billed(self, model: str, prompt: int, completion: int) -> None:
        label = model if model in self._models or not model else OTHER
        children = self._by_tokens.get(label)
        if children is None:
            children = (self.tokens.labels(label, "in"), self.tokens.labels(label, "out"))
            self._by_tokens[label] = children
        if prompt:
            children[0].inc(prompt)
        if completion:
            children[1].inc(completion)

    def upstream_error(self, model: str, reason: str) -> None:
        self.upstream_errors.labels(self.model(model), reason).inc()

    def refused(self, model: str, code: str) -> None:
        self.refusals.labels(self.model(model), code).inc()

    def failover(self, model: str) -> None:
        self.failovers.labels(self.model(model)).inc()

    def rejected(self, kind: str | None) -> None:
        self.rejections.labels(kind or OTHER).inc()

    def ejected(self, model: str, replica: str) -> None:
        self.ejections.labels(self.model(model), replica).inc()

    def render(self) -> bytes:
        """The text exposition: this process's, or every worker's in multiprocess mode."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
