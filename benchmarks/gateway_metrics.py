"""The CPU cost of the gateway's Prometheus metrics, A/B in one process and one run.

The gateway app (auth, limits, quota reservation, metering to an in-memory sink) is driven
in-process through raw ASGI calls, its engine the in-process mock (no sockets, so the
measure is the gateway's own Python), once with its real metrics and once with metrics
whose hooks do nothing; blocks alternate (A B A B …) so machine load hits both alike. The
result is CPU microseconds per request (``time.process_time``) for each, their difference
(the metrics' cost) and the hooks alone (``GatewayMetrics.request`` + ``billed``).

Run: ``.venv/bin/python benchmarks/gateway_metrics.py [--requests 1000] [--rounds 9]``.
Writes ``benchmarks/results/gateway_metrics.json`` and ``.md``. Goal: < 30 µs a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gateway_support import FakeKeys, MemorySink, make_gateway, replica  # noqa: E402
from suanwang.domain.limits import KeyLimits, Limits, TenantLimits  # noqa: E402
from suanwang.gateway.metrics import GatewayMetrics  # noqa: E402
from suanwang.services.models import default_models  # noqa: E402

RESULTS = ROOT / "benchmarks/results"
CHAT = "smollm2-135m-instruct"


class NoMetrics(GatewayMetrics):
    """The same hooks, doing nothing."""

    def request(self, route: str, model: str, status: int, seconds: float) -> None:  # noqa: ARG002
        return None

    def billed(self, model: str, prompt: int, completion: int) -> None:  # noqa: ARG002
        return None


def body_for(stream: bool) -> bytes:
    payload = {"model": CHAT, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


async def call(app: Any, key: str, body: bytes) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
    }
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            await asyncio.sleep(3600)  # no disconnect while the answer streams
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(_: Any) -> None:
        return None

    await app(scope, receive, send)


def build(metrics: GatewayMetrics) -> tuple[Any, str]:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("bench")
    limits = Limits(TenantLimits(rpm=10**9, token_quota=10**12), KeyLimits(rpm=10**9))
    app = make_gateway([replica("r1")], keys=keys, sink=sink, limits=limits)
    app.metrics = metrics
    app._proxy._metrics = metrics  # the proxy holds the app's metrics too
    return app, key


async def block(app: Any, key: str, body: bytes, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await call(app, key, body)
    return (time.process_time() - start) / n * 1e6


async def measure(requests: int, rounds: int, stream: bool) -> dict[str, Any]:
    body = body_for(stream)
    real, null = build(GatewayMetrics(default_models())), build(NoMetrics(default_models()))
    for app, key in (real, null):
        await block(app, key, body, 200)  # warm caches and children
    with_, without = [], []
    for _ in range(rounds):
        with_.append(await block(*real, body, requests))
        without.append(await block(*null, body, requests))
    a, b = statistics.median(with_), statistics.median(without)
    pairs = [x - y for x, y in zip(with_, without, strict=True)]
    return {
        "stream": stream,
        "cpu_us_per_request_with_metrics": round(a, 1),
        "cpu_us_per_request_without": round(b, 1),
        "metrics_cost_us": round(a - b, 1),
        "metrics_cost_us_min_vs_min": round(min(with_) - min(without), 1),
        "metrics_cost_us_median_of_pairs": round(statistics.median(pairs), 1),
        "rounds_with": [round(x, 1) for x in with_],
        "rounds_without": [round(x, 1) for x in without],
    }


def hooks_alone(n: int = 200_000) -> float:
    metrics = GatewayMetrics(default_models())
    start = time.process_time()
    for _ in range(n):
        metrics.request("chat/completions", CHAT, 200, 0.0012)
        metrics.billed(CHAT, 12, 30)
    return round((time.process_time() - start) / n * 1e6, 2)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Gateway metrics: CPU per request, with and without (A/B in one run)",
        "",
        f"{result['requests_per_block']} requests per block, {result['rounds']} rounds; "
        f"{result['cpus']} CPUs; load average at end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}; "
        f"PROMETHEUS_MULTIPROC_DIR {'set' if result['multiprocess'] else 'unset'}.",
        "",
        "| stream | with metrics µs (median) | without µs (median) | cost: medians "
        "| cost: minima | cost: median of pairs |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        lines.append(
            f"| {'yes' if c['stream'] else 'no'} | {c['cpu_us_per_request_with_metrics']} "
            f"| {c['cpu_us_per_request_without']} | {c['metrics_cost_us']} "
            f"| {c['metrics_cost_us_min_vs_min']} | {c['metrics_cost_us_median_of_pairs']} |"
        )
    lines += [
        "",
        f"Hooks alone (request + billed): {result['hooks_alone_us']} µs a request.",
        "Goal: < 30 µs a request. Medians over rounds; in-process engine, no sockets.",
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
        "benchmark": "gateway_metrics",
        "requests_per_block": args.requests,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "multiprocess": bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
        "hooks_alone_us": hooks_alone(),
        "cases": cases,
        "load_average_at_end": list(os.getloadavg()),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateway_metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "gateway_metrics.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
