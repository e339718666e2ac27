"""Whole-trace simulation speed: CPU seconds per policy, and a digest of every decision.

Replays the Philly-derived trace (``../shared/traces/philly-gavel-seed0.csv``, 13,716
jobs) on one fleet under each policy, in this process, and measures the CPU time
(``time.process_time``: the development VM is shared, so wall time mostly measures the
other sessions) of the simulation and of the metrics. The issue-3 goal is the whole trace
in under 60 s per policy.

Each run's *digest* hashes every job's and attempt's record and the engine's counters:
two runs with the same digest made the same decisions. The baseline is the same policy
without a ``CycleCache`` (``--baseline``, every cycle built from scratch), in the same
run: the ratio is the time with the cache over the time without, and the digests must
match.

Run: ``.venv/bin/python benchmarks/scheduler_trace_speed.py [--fleet gavel-hetero-768]
[--policies suanwang,fifo] [--max-jobs N] [--baseline]``. Writes
``benchmarks/results/scheduler_trace_speed.json`` and ``.md`` (``--tag`` adds a suffix).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from quality_workloads import inputs_for

from suanwang.scheduler import Decision, Snapshot
from suanwang.simulator.engine import SimConfig, simulate
from suanwang.simulator.importers import FleetKind
from suanwang.simulator.metrics import compute_metrics
from suanwang.simulator.outcome import SimOutcome
from suanwang.simulator.policies import Policy, resolve_policy

RESULTS = Path(__file__).parent / "results"
POLICIES = ("suanwang", "fifo", "slurm", "kueue")


def digest(outcome: SimOutcome) -> str:
    """A hash of every job and attempt record and of the decision counters."""
    h = hashlib.sha256()
    for job in outcome.jobs:
        h.update(repr(dataclasses.astuple(job)).encode())
    for attempt in outcome.attempts:
        h.update(repr(dataclasses.astuple(attempt)).encode())
    c = outcome.counters
    counted = (c.cycles, c.admissions, c.preemptions, c.lost_card_s, c.lost_work_s)
    h.update(repr((*counted, c.bytes_staged, sorted(c.allocated_card_s.items()))).encode())
    return h.hexdigest()[:16]


def without_cache(policy: Policy) -> Policy:
    """The policy as a plain ``cycle(snapshot)``: the engine then keeps no cache."""

    def run(snapshot: Snapshot) -> list[Decision]:
        return policy(snapshot)

    return run


def measure(inputs: Any, name: str, cached: bool, config: SimConfig) -> dict[str, Any]:
    """One whole run: CPU seconds of the simulation and of the metrics, and its digest."""
    policy = resolve_policy(name)
    started = time.process_time()
    outcome = simulate(
        inputs.fleet, inputs.jobs, policy if cached else without_cache(policy), config
    )
    simulated = time.process_time()
    metrics = compute_metrics(outcome)
    done = time.process_time()
    row = {
        "policy": name,
        "cache": cached,
        "jobs": metrics.jobs,
        "cycles": outcome.counters.cycles,
        "simulate_cpu_s": round(simulated - started, 2),
        "metrics_cpu_s": round(done - simulated, 2),
        "total_cpu_s": round(done - started, 2),
        "digest": digest(outcome),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), file=sys.stderr)
    return row


def markdown(payload: dict[str, Any]) -> str:
    out = [
        f"# scheduler_trace_speed: {payload['fleet']}, {payload['jobs']} jobs",
        "",
        "CPU seconds (`time.process_time`); load = 1-minute load average at the end of the run.",
        "",
        "| policy | cache | cycles | simulate CPU s | metrics CPU s | total CPU s | "
        "under 60 s | digest | load |",
        "|" + "---|" * 9,
    ]
    for r in payload["rows"]:
        out.append(
            f"| {r['policy']} | {'yes' if r['cache'] else 'no'} | {r['cycles']} | "
            f"{r['simulate_cpu_s']} | {r['metrics_cpu_s']} | {r['total_cpu_s']} | "
            f"{'yes' if r['total_cpu_s'] < 60 else 'NO'} | `{r['digest']}` | {r['load_1m']} |"
        )
    if payload["ratios"]:
        out += ["", "With / without the cache (same run):", ""]
        for name, ratio in payload["ratios"].items():
            same = "same decisions" if ratio["same_digest"] else "DIFFERENT decisions"
            out.append(f"- {name}: CPU x {ratio['cpu_ratio']:.2f}, {same}")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", default="gavel-hetero-768", help="fleet file or name")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--max-jobs", type=int, default=0, help="0 = whole trace")
    parser.add_argument("--baseline", action="store_true", help="also run without the cache")
    parser.add_argument("--decision-interval-s", type=float, default=60.0)
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    kind = FleetKind.GAVEL if "gavel" in args.fleet else FleetKind.DEMO
    inputs = inputs_for(kind, args.fleet, args.max_jobs or None)
    config = SimConfig(decision_interval_s=args.decision_interval_s)
    rows, ratios = [], {}
    for name in args.policies.split(","):
        row = measure(inputs, name, True, config)
        rows.append(row)
        if args.baseline:
            base = measure(inputs, name, False, config)
            rows.append(base)
            ratios[name] = {
                "cpu_ratio": row["total_cpu_s"] / base["total_cpu_s"],
                "same_digest": row["digest"] == base["digest"],
            }
    payload = {
        "benchmark": "scheduler_trace_speed",
        "fleet": args.fleet,
        "jobs": len(inputs.jobs),
        "trace": inputs.trace_name,
        "config": config.settings(),
        "rows": rows,
        "ratios": ratios,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "scheduler_trace_speed" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str))
    text = markdown(payload)
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
