"""The CPU cost of the gateway's demand tracking for the autoscaler, A/B in one process and run.

The gateway app (auth, limits, quota reservation, metering to an in-memory sink) is driven
in-process through raw ASGI calls, its engine the in-process mock (as
``benchmarks/gateway_metrics.py``), once as it is (demand tracked: per-request
``arrived``/``answered`` hooks and the router's per-replica lease counts) and once as before
(hooks doing nothing, the router's lease without the per-replica counts); blocks alternate
(A B A B …) so machine load hits both alike. Also measured alone: building one report for
10 deployments, and writing it to SQLite the way the gateway does once a second
(``SqlDemandSink.record``, in a thread off the event loop).

Run: ``.venv/bin/python benchmarks/gateway_demand.py [--requests 1000] [--rounds 9]``.
Writes ``benchmarks/results/gateway_demand.json`` and ``.md``. Goal: < 10 µs a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gateway_metrics import body_for, call  # noqa: E402

from gateway_support import FakeKeys, MemorySink, make_gateway, replica  # noqa: E402
from suanwang.adapters.db.demand_repo import SqlDemandSink  # noqa: E402
from suanwang.adapters.db.engine import make_engine, migrate  # noqa: E402
from suanwang.adapters.db.uow import SqlUnitOfWorkFactory  # noqa: E402
from suanwang.domain.limits import KeyLimits, Limits, TenantLimits  # noqa: E402
from suanwang.gateway.demand import DemandTracker  # noqa: E402
from suanwang.gateway.routing import Router, Slot  # noqa: E402

RESULTS = ROOT / "benchmarks/results"


class NoDemand(DemandTracker):
    """The same hooks, doing nothing (the gateway before demand tracking)."""

    def arrived(self, deployment: str) -> None:  # noqa: ARG002
        return None

    def answered(self, deployment: str, completion_tokens: int, ttft_s: float) -> None:  # noqa: ARG002
        return None


class LeaseAsBefore(Router):
    """The router's lease as it was: the slot's count and the breaker trial only."""

    @contextmanager
    def lease(self, slot: Slot) -> Iterator[Slot]:
        slot.outstanding += 1
        trial = slot.breaker.begin(self._clock.now())
        try:
            yield slot
        finally:
            slot.outstanding -= 1
            if trial:
                slot.breaker.end_trial()


def build(tracked: bool) -> tuple[Any, str]:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("bench")
    limits = Limits(TenantLimits(rpm=10**9, token_quota=10**12), KeyLimits(rpm=10**9))
    app = make_gateway([replica("r1")], keys=keys, sink=sink, limits=limits)
    if not tracked:
        app.demand = NoDemand(app.gw.clock, "gw-bench")
        router = LeaseAsBefore(app.gw.router._directory, app.gw.clock, refresh_s=1.0, eject_s=5.0)
        router.load([replica("r1")])
        app.gw.router = router
        app._proxy._router = router
    return app, key


async def block(app: Any, key: str, body: bytes, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await call(app, key, body)
    return (time.process_time() - start) / n * 1e6


async def measure(requests: int, rounds: int, stream: bool) -> dict[str, Any]:
    body = body_for(stream)
    now, before = build(True), build(False)
    for app, key in (now, before):
        await block(app, key, body, 200)  # warm caches
    with_, without = [], []
    for _ in range(rounds):
        with_.append(await block(*now, body, requests))
        without.append(await block(*before, body, requests))
    a, b = statistics.median(with_), statistics.median(without)
    pairs = [x - y for x, y in zip(with_, without, strict=True)]
    return {
        "stream": stream,
        "cpu_us_per_request_tracked": round(a, 1),
        "cpu_us_per_request_before": round(b, 1),
        "cost_us_medians": round(a - b, 1),
        "cost_us_median_of_pairs": round(statistics.median(pairs), 1),
        "rounds_tracked": [round(x, 1) for x in with_],
        "rounds_before": [round(x, 1) for x in without],
    }


def a_busy_tracker(deployments: Iterable[str]) -> DemandTracker:
    class Clock:
        def now(self) -> float:
            return time.time()

    tracker = DemandTracker(Clock(), "gw-bench")
    for d in deployments:
        for _ in range(200):
            tracker.arrived(d)
            tracker.answered(d, 24, 0.3)
    return tracker


def hooks_alone(n: int = 200_000) -> float:
    """CPU µs per request of the tracking itself: arrived + answered + a router lease."""
    tracker = a_busy_tracker(["dep-r1"])
    app, _ = build(True)
    router = app.gw.router
    (slot,) = router.visible("smollm2-135m-instruct", "bench")
    start = time.process_time()
    for _ in range(n):
        with router.lease(slot):
            tracker.arrived("dep-r1")
            tracker.answered("dep-r1", 24, 0.3)
    tracked = time.process_time() - start
    before = LeaseAsBefore(router._directory, app.gw.clock, refresh_s=1.0, eject_s=5.0)
    before.load([replica("r1")])
    (slot,) = before.visible("smollm2-135m-instruct", "bench")
    start = time.process_time()
    for _ in range(n):
        with before.lease(slot):
            pass
    return round((tracked - (time.process_time() - start)) / n * 1e6, 2)


def report_costs(n_deployments: int = 10, reps: int = 200) -> dict[str, float]:
    """CPU µs to build one report of ``n_deployments``, and wall ms to write it to SQLite."""
    deployments = [f"dep-{i:04x}" for i in range(n_deployments)]
    tracker = a_busy_tracker(deployments)
    inflight = {d: {f"{d}-0": 3, f"{d}-1": 1} for d in deployments}
    start = time.process_time()
    for _ in range(reps):
        reports = tracker.reports(deployments, inflight, time.time())
    build_us = (time.process_time() - start) / reps * 1e6
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        engine = make_engine(url)
        sink = SqlDemandSink(SqlUnitOfWorkFactory(engine))
        sink.record("gw-bench", reports)
        start_wall = time.perf_counter()
        for _ in range(reps):
            sink.record("gw-bench", reports)
        write_ms = (time.perf_counter() - start_wall) / reps * 1e3
        engine.dispose()
    return {
        "deployments": n_deployments,
        "build_report_cpu_us": round(build_us, 1),
        "write_report_sqlite_ms": round(write_ms, 2),
    }


def markdown(result: dict[str, Any]) -> str:
    r = result["report"]
    lines = [
        "# Gateway demand tracking: CPU per request, tracked vs before (A/B in one run)",
        "",
        f"{result['requests_per_block']} requests per block, {result['rounds']} rounds; "
        f"{result['cpus']} CPUs; load average at end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}.",
        "",
        "| stream | tracked µs (median) | before µs (median) | cost: medians "
        "| cost: median of pairs |",
        "|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        lines.append(
            f"| {'yes' if c['stream'] else 'no'} | {c['cpu_us_per_request_tracked']} "
            f"| {c['cpu_us_per_request_before']} | {c['cost_us_medians']} "
            f"| {c['cost_us_median_of_pairs']} |"
        )
    lines += [
        "",
        f"Once a second per gateway process, off the request path: building the report of "
        f"{r['deployments']} deployments {r['build_report_cpu_us']} µs CPU; writing it to "
        f"SQLite (delete + insert, one transaction) {r['write_report_sqlite_ms']} ms wall.",
        f"Hooks alone (arrived + answered + the lease's per-replica count, minus the lease "
        f"as before): {result['hooks_alone_us']} µs a request.",
        "Goal: < 10 µs a request. Medians over rounds; in-process engine, no sockets.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    cases = [asyncio.run(measure(args.requests, args.rounds, stream)) for stream in (False, True)]
    result = {
        "benchmark": "gateway_demand",
        "requests_per_block": args.requests,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "report": report_costs(),
        "hooks_alone_us": hooks_alone(),
        "cases": cases,
        "load_average_at_end": list(os.getloadavg()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateway_demand.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gateway_demand.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
