"""Scheduler quality benchmark: our policy against FIFO, Slurm-like and Kueue-like baselines.

The real Philly-derived trace (``../shared/traces/philly-gavel-seed0.csv``, 15 tenants,
13,716 jobs) is replayed through the simulator, which runs the same scheduler code as the
live control plane, with all four policies in one run per fleet:

(a) on Gavel's heterogeneous V100 / P100 / K80 mix, each job's speed on each type taken
    from ``throughput-matrix.csv``: the whole trace on ``gavel-hetero-768`` (768 GPUs,
    ~527 V100-equivalents), and a window of it (``--small-window``, default the first
    1,000 jobs) on Gavel's own 108-GPU ``gavel-hetero``, which that window overloads
    many times over (a stress test of starvation);
(b) on a 1/50 slice of the demo fleet (``benchmarks/fleets/demo-slice-50.yaml``: the
    demo's regions, clusters, chip mix and WAN link, 256 cards, ~500 V100-equivalents),
    speeds mapped from the matrix as documented in ``docs/trace-format.md``. The whole
    demo fleet (12,500+ cards) never queues this trace (at most 32 cards a job), so every
    policy ties there; ``--demo-fleet demo --demo-time-scale 0.001`` replays it anyway.

Each policy's average / median / p95 JCT, queueing delay, makespan, utilisation, Jain's
index over the tenants' average slowdown and over their finish-time fairness rho
(sum of JCT / sum of reference run time), the worst tenant's rho and per-tenant JCT are
written, with our policy's JCT as a ratio to each baseline, to
``benchmarks/results/scheduler_quality.{json,md}`` (``--name`` for another name).

Run: ``.venv/bin/python benchmarks/scheduler_quality.py`` (whole trace; ``--max-jobs N``
replays the first N jobs on the large fleets instead; ``--demo-max-jobs`` sets the demo
fleet's window apart, 0 skips it: the whole trace overloads the slice for weeks of
simulated time and takes far longer there). ``--workers N`` runs N simulations
at a time, each in a child process of this script (``--task``) that prints its result row
as JSON; nothing is pickled.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


DEMO_SLICE = HERE / "fleets" / "demo-slice-50.yaml"


def inputs_for(
    kind: FleetKind, fleet: str, max_jobs: int | None, time_scale: float = 1.0
) -> Inputs:
    jobs = import_philly_gavel(
        TRACES / "philly-gavel-seed0.csv", TRACES / "throughput-matrix.csv", kind, max_jobs=max_jobs
    )
    name = f"philly-gavel-seed0 ({len(jobs)} jobs)"
    if time_scale != 1.0:
        jobs = [dataclasses.replace(j, submit_s=j.submit_s * time_scale) for j in jobs]
        name += f", arrivals x {time_scale:g}"
    return Inputs(load_fleet(fleet), tuple(jobs), None, name)


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
        "jain_ftf": m.jain_ftf,
        "max_ftf": m.max_ftf,
        "preemptions": m.preemptions,
        "lost_card_h": m.lost_card_s / 3600,
        "utilisation": dict(m.utilisation),
        "wall_s": m.wall_s,
        "tenants": {
            t.tenant: {
                "jobs": t.jobs,
                "avg_jct_h": t.avg_jct_s / 3600,
                "avg_slowdown": t.avg_slowdown,
                "ftf": t.ftf,
                "share": t.share,
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
        "Jain (slowdown) | Jain (rho) | worst rho | worst tenant avg JCT h | preemptions | "
        "CPU s |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        worst = max(t["avg_jct_h"] for t in r["tenants"].values())
        out.append(
            f"| {r['policy']} | {r['avg_jct_h']:.2f} | {r['median_jct_h']:.2f} | "
            f"{r['p95_jct_h']:.2f} | {r['avg_queueing_h']:.2f} | {r['makespan_h']:.1f} | "
            f"{r['jain_index']:.3f} | {r['jain_ftf']:.3f} | {r['max_ftf']:.2f} | "
            f"{worst:.2f} | {r['preemptions']} | {r.get('cpu_s', 0.0):.0f} |"
        )
    out.append("")
    out += [
        f"- ours / {b}: avg JCT × {v['avg_jct_ratio']:.2f}, p95 JCT × {v['p95_jct_ratio']:.2f}"
        for b, v in ratios.items()
    ]
    out += ["", *tenant_table(rows)]
    return "\n".join(out) + "\n"


def tenant_table(rows: list[dict[str, Any]]) -> list[str]:
    """Per-tenant average JCT (h) and rho under each policy."""
    tenants = sorted({t for r in rows for t in r["tenants"]})
    out = [
        "<details><summary>per-tenant average JCT h (rho)</summary>",
        "",
        "| tenant | jobs | " + " | ".join(r["policy"] for r in rows) + " |",
        "|" + "---|" * (len(rows) + 2),
    ]
    for tenant in tenants:
        cells = []
        for r in rows:
            t = r["tenants"].get(tenant)
            cells.append(f"{t['avg_jct_h']:.1f} ({t['ftf']:.1f})" if t else "-")
        jobs = next(r["tenants"][tenant]["jobs"] for r in rows if tenant in r["tenants"])
        out.append(f"| {tenant} | {jobs} | " + " | ".join(cells) + " |")
    return [*out, "", "</details>", ""]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One fleet and window of the trace, replayed under every policy."""

    name: str
    kind: FleetKind
    fleet: str
    max_jobs: int | None
    time_scale: float = 1.0


def run_one(scenario: Scenario, policy: str, config: SimConfig) -> dict[str, Any]:
    """One policy over one scenario: its result row, with the CPU seconds it took."""
    started, cpu = time.perf_counter(), time.process_time()
    inputs = inputs_for(scenario.kind, scenario.fleet, scenario.max_jobs, scenario.time_scale)
    (metrics,) = run_policies(inputs, [policy], config)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"  {scenario.name} {policy}: {metrics.jobs} jobs ({took:.0f} s, {cpu:.0f} s CPU)",
        file=sys.stderr,
    )
    return {**row(metrics), "cpu_s": cpu, "trace": inputs.trace_name}


def task_json(scenario: Scenario, policy: str, config: SimConfig) -> str:
    """The ``--task`` argument of a child run: plain JSON."""
    spec = {**dataclasses.asdict(scenario), "kind": str(scenario.kind)}
    task = {"scenario": spec, "policy": policy}
    return json.dumps({**task, "decision_interval_s": config.decision_interval_s})


def run_task(text: str) -> None:
    """``--task``: run one policy over one scenario and print its row as JSON."""
    task = json.loads(text)
    spec = task["scenario"]
    scenario = Scenario(**{**spec, "kind": FleetKind(spec["kind"])})
    config = SimConfig(decision_interval_s=task["decision_interval_s"])
    print(json.dumps(run_one(scenario, task["policy"], config)))


def run_child(scenario: Scenario, policy: str, config: SimConfig) -> dict[str, Any]:
    """One task in a child process of this script; its row read back from JSON."""
    command = [sys.executable, __file__, "--task", task_json(scenario, policy, config)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_all(scenarios: list[Scenario], config: SimConfig, workers: int) -> list[dict[str, Any]]:
    """Every policy over every scenario: in this process, or ``workers`` child processes
    at a time."""
    tasks = [(s, p) for s in scenarios for p in POLICIES]
    if workers <= 1:
        done = [run_one(s, p, config) for s, p in tasks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(lambda task: run_child(*task, config), tasks))
    results = []
    for scenario in scenarios:
        rows = [r for (s, _p), r in zip(tasks, done, strict=True) if s is scenario]
        trace = rows[0].pop("trace")
        for r in rows[1:]:
            r.pop("trace")
        results.append(
            {"fleet": scenario.name, "trace": trace, "rows": rows, "ratios": compare(rows)}
        )
    return results


def resource_cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-jobs", type=int, default=0, help="jobs on the large fleets (0 = whole trace)"
    )
    parser.add_argument(
        "--small-window", type=int, default=1000, help="jobs on gavel-hetero (0 = skip)"
    )
    parser.add_argument(
        "--demo-fleet", default=str(DEMO_SLICE), help="demo fleet (file, or 'demo')"
    )
    parser.add_argument(
        "--demo-max-jobs",
        type=int,
        default=-1,
        help="jobs on the demo fleet (-1 = as --max-jobs, 0 = skip the demo fleet)",
    )
    parser.add_argument(
        "--demo-time-scale",
        type=float,
        default=1.0,
        help="multiply submit times on the demo fleet (compress arrivals)",
    )
    parser.add_argument("--decision-interval-s", type=float, default=60.0)
    parser.add_argument(
        "--workers", type=int, default=1, help="simulations run at a time (child processes)"
    )
    parser.add_argument(
        "--name", default="scheduler_quality", help="results file name (without .json / .md)"
    )
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:
        run_task(args.task)
        return
    load_before, cpu_before = os.getloadavg(), resource_cpu_s()
    max_jobs = args.max_jobs or None
    config = SimConfig(decision_interval_s=args.decision_interval_s)
    demo = Path(args.demo_fleet).stem
    scenarios = [
        Scenario("gavel-hetero-768 (V100/P100/K80)", FleetKind.GAVEL, "gavel-hetero-768", max_jobs),
        Scenario("gavel-hetero (108 GPUs)", FleetKind.GAVEL, "gavel-hetero", args.small_window),
    ]
    if not args.small_window:
        del scenarios[1]
    if args.demo_max_jobs:
        demo_jobs = max_jobs if args.demo_max_jobs < 0 else args.demo_max_jobs
        scale = args.demo_time_scale
        scenarios.append(
            Scenario(f"demo fleet ({demo})", FleetKind.DEMO, args.demo_fleet, demo_jobs, scale)
        )
    results = run_all(scenarios, config, args.workers)
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "scheduler_quality",
        "max_jobs": max_jobs,
        "small_window": args.small_window,
        "demo_fleet": demo,
        "demo_max_jobs": args.demo_max_jobs,
        "demo_time_scale": args.demo_time_scale,
        "workers": args.workers,
        "command": " ".join(sys.argv),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "cpu_s_total": resource_cpu_s() - cpu_before,
        "config": config.settings(),
        "results": results,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2, default=str))
    load = ", ".join(
        f"{a:.1f} → {b:.1f}" for a, b in zip(load_before, os.getloadavg(), strict=True)
    )
    head = (
        f"# scheduler_quality\n\n`{payload['command']}`; load average (1, 5, 15 min) "
        f"{load}; {payload['cpu_s_total']:.0f} CPU s in all\n\n"
    )
    text = head + "\n".join(
        markdown(r["fleet"] + f" — {r['trace']}", r["rows"], r["ratios"]) for r in results
    )
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
