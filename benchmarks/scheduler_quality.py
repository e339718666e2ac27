"""Scheduler quality benchmark: our policy against FIFO, Slurm-like and Kueue-like baselines.

The real Philly-derived trace (``../shared/traces/philly-gavel-seed0.csv``, 15 tenants,
13,716 jobs) is replayed through the simulator, which runs the same scheduler code as the
live control plane:

(a) on Gavel's heterogeneous fleet (V100 / P100 / K80, ``gavel-hetero``), each job's
    speed on each type taken from ``throughput-matrix.csv``;
(b) on the demo fleet (Ascend 910B, H20, MetaX C500, Hygon K100 …), speeds mapped from the
    matrix as documented in ``docs/simulator.md``. The demo fleet has 12,000+ cards and the
    trace asks for at most 32, so arrivals are compressed (``--demo-time-scale``) to load it.

For speed the default replays a window (the first ``--max-jobs`` jobs); ``--max-jobs 0``
replays the whole trace. Each policy's average / median / p95 JCT, queueing delay,
makespan, utilisation, Jain's index and per-tenant JCT are written, with our policy's JCT
as a ratio to each baseline, to ``benchmarks/results/scheduler_quality.{json,md}``.

Run: ``.venv/bin/python benchmarks/scheduler_quality.py [--max-jobs 2000]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from suanwang.simulator.engine import SimConfig
from suanwang.simulator.fleet import load_fleet
from suanwang.simulator.importers import FleetKind, import_philly_gavel
from suanwang.simulator.metrics import PolicyMetrics
from suanwang.simulator.runner import Inputs, run_policies

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TRACES = Path(os.environ.get("SUANWANG_TRACES_DIR", HERE.parent.parent / "shared" / "traces"))
POLICIES = ("fifo", "slurm", "kueue", "suanwang")
BASELINES = ("fifo", "slurm", "kueue")


def inputs_for(kind: FleetKind, fleet: str, max_jobs: int | None, time_scale: float) -> Inputs:
    jobs = import_philly_gavel(
        TRACES / "philly-gavel-seed0.csv", TRACES / "throughput-matrix.csv", kind, max_jobs=max_jobs
    )
    if time_scale != 1.0:
        jobs = [dataclasses.replace(j, submit_s=j.submit_s * time_scale) for j in jobs]
    return Inputs(load_fleet(fleet), tuple(jobs), None, f"philly-gavel-seed0 ({len(jobs)} jobs)")


def row(m: PolicyMetrics) -> dict[str, Any]:
    return {
        "policy": m.policy,
        "jobs": m.jobs,
        "completed": m.completed,
        "avg_jct_h": m.jct_s.avg / 3600,
        "median_jct_h": m.jct_s.median / 3600,
        "p95_jct_h": m.jct_s.p95 / 3600,
        "avg_queueing_h": m.queueing_s.avg / 3600,
        "makespan_h": m.makespan_s / 3600,
        "jain_index": m.jain_index,
        "preemptions": m.preemptions,
        "lost_card_h": m.lost_card_s / 3600,
        "utilisation": dict(m.utilisation),
        "wall_s": m.wall_s,
        "tenants": {
            t.tenant: {
                "jobs": t.jobs,
                "avg_jct_h": t.avg_jct_s / 3600,
                "avg_slowdown": t.avg_slowdown,
            }
            for t in m.tenants
        },
    }


def compare(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by = {r["policy"]: r for r in rows}
    ours = by["suanwang"]
    return {
        b: {
            "avg_jct_ratio": ours["avg_jct_h"] / by[b]["avg_jct_h"],
            "p95_jct_ratio": ours["p95_jct_h"] / by[b]["p95_jct_h"],
        }
        for b in BASELINES
        if b in by
    }


def markdown(name: str, rows: list[dict[str, Any]], ratios: dict[str, dict[str, float]]) -> str:
    out = [
        f"## {name}",
        "",
        "| policy | avg JCT h | median h | p95 h | avg queue h | makespan h | "
        "Jain | preemptions | worst tenant avg JCT h |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        worst = max(t["avg_jct_h"] for t in r["tenants"].values())
        out.append(
            f"| {r['policy']} | {r['avg_jct_h']:.2f} | {r['median_jct_h']:.2f} | "
            f"{r['p95_jct_h']:.2f} | "
            f"{r['avg_queueing_h']:.2f} | {r['makespan_h']:.1f} | {r['jain_index']:.3f} | "
            f"{r['preemptions']} | {worst:.2f} |"
        )
    out.append("")
    out += [
        f"- ours / {b}: avg JCT × {v['avg_jct_ratio']:.2f}, p95 JCT × {v['p95_jct_ratio']:.2f}"
        for b, v in ratios.items()
    ]
    return "\n".join(out) + "\n"


def run(name: str, inputs: Inputs, config: SimConfig) -> dict[str, Any]:
    started = time.perf_counter()

    def progress(tag: str, done: int, total: int) -> None:
        if done == total:
            print(
                f"  {name} {tag}: {total} jobs done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )

    rows = [row(m) for m in run_policies(inputs, POLICIES, config, progress)]
    return {"fleet": name, "trace": inputs.trace_name, "rows": rows, "ratios": compare(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-jobs", type=int, default=2000, help="0 = the whole trace")
    parser.add_argument(
        "--demo-time-scale",
        type=float,
        default=0.02,
        help="multiply submit times on the demo fleet (compress arrivals)",
    )
    parser.add_argument("--decision-interval-s", type=float, default=60.0)
    args = parser.parse_args()
    max_jobs = args.max_jobs or None
    config = SimConfig(decision_interval_s=args.decision_interval_s)
    results = [
        run(
            "gavel-hetero (V100/P100/K80)",
            inputs_for(FleetKind.GAVEL, "gavel-hetero", max_jobs, 1.0),
            config,
        ),
        run(
            "demo fleet", inputs_for(FleetKind.DEMO, "demo", max_jobs, args.demo_time_scale), config
        ),
    ]
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "scheduler_quality",
        "max_jobs": max_jobs,
        "demo_time_scale": args.demo_time_scale,
        "config": config.settings(),
        "results": results,
    }
    (RESULTS / "scheduler_quality.json").write_text(json.dumps(payload, indent=2, default=str))
    text = "# scheduler_quality\n\n" + "\n".join(
        markdown(r["fleet"] + f" — {r['trace']}", r["rows"], r["ratios"]) for r in results
    )
    (RESULTS / "scheduler_quality.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
