"""Scheduler quality: every policy on Gavel's workloads, generated ones and held-out windows.

One run simulates every policy (``fifo``, ``slurm``, ``kueue``, ``gavel-like`` and
``suanwang``) on every workload of ``quality_workloads.py`` (Gavel's E1-E3 on their
clusters, with Gavel's best figures; our generator's workloads; held-out 300- and
1,000-job windows of the Philly-derived trace on 36:36:36; each marked ``tuning`` or
``held out``) under two settings, and reports the same table for each:

- ``--cost free``: the Gavel-matched mode (``sim run --compare-gavel``): 6-minute rounds,
  a move loses nothing and restarts at once;
- ``--cost realistic``: 6-minute rounds, a move loses the work since the job's last
  checkpoint and waits a 30 s restart delay.

Per policy: average and p95 JCT, makespan, Jain's index over the tenants' average
slowdown, preemptions (moves included) and GPU-hours lost to them; per row whether ours
has the lowest average JCT, and on E1-E3 ours over Gavel's best. A run that exceeds its
CPU budget (``--budget-cpu-s``, 120 s, and ``--realistic-budget-cpu-s``, 20 s: ``gavel-like``
under realistic cost swaps jobs out before their checkpoints round after round and does
not finish most rows) is stopped and reported as such, with the jobs it had finished.

Run: ``SUANWANG_TRACES_DIR=../shared/traces .venv/bin/python benchmarks/scheduler_quality.py``
(a few CPU minutes). Writes ``benchmarks/results/scheduler_quality.{json,md}`` (``--name``
for another name); ``--only`` keeps the rows whose name contains a string.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from quality_workloads import (
    HELD_OUT_SEEDS,
    HELD_OUT_WINDOWS,
    TUNING_SEEDS,
    Row,
    gavel_rows,
    generated_rows,
    heldout_rows,
)

from suanwang.simulator.engine import GAVEL_MATCHED, SimConfig, simulate
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.metrics import PolicyMetrics, compute_metrics
from suanwang.simulator.policies import resolve_policy
from suanwang.simulator.state import CostModel

RESULTS = Path(__file__).parent / "results"
POLICIES = ("fifo", "slurm", "kueue", "gavel-like", "suanwang")
OURS = "suanwang"
REALISTIC = dataclasses.replace(
    GAVEL_MATCHED, cost_model=CostModel.REALISTIC, restart_delay_s=30.0, mode="custom"
)
"""6-minute rounds, but a move loses the work since the last checkpoint and waits 30 s."""


class OverBudget(Exception):
    """A run used more CPU time than its budget (raised from the progress callback)."""


def result(m: PolicyMetrics) -> dict[str, Any]:
    return {
        "status": "done",
        "completed": m.completed,
        "jobs": m.jobs,
        "avg_jct_s": m.jct_s.avg,
        "p95_jct_s": m.jct_s.p95,
        "makespan_s": m.makespan_s,
        "jain_index": m.jain_index,
        "preemptions": m.preemptions,
        "lost_gpu_h": m.lost_card_s / 3600,
    }


def run_policy(row: Row, policy: str, config: SimConfig, budget_s: float) -> dict[str, Any]:
    """One policy over one row: its figures, or why it stopped, and its CPU seconds."""
    start = time.process_time()
    finished = [0]

    def progress(done: int, _total: int) -> None:
        finished[0] = done
        if time.process_time() - start > budget_s:
            raise OverBudget

    inputs = row.inputs
    try:
        outcome = simulate(
            inputs.fleet, inputs.jobs, resolve_policy(policy), config, progress=progress
        )
        out = result(compute_metrics(outcome))
    except OverBudget:
        done = f"{finished[0]:,} of {len(inputs.jobs):,} jobs done"
        out = {"status": f"stopped at the {budget_s:.0f} CPU s budget, {done}"}
    except SimulationError as exc:
        out = {"status": f"stopped: {exc}, {finished[0]:,} jobs done"}
    cpu = time.process_time() - start
    print(f"  {row.name} {config.cost_model} {policy}: {cpu:.1f} CPU s", file=sys.stderr)
    return {**out, "cpu_s": cpu}


def run_row(row: Row, config: SimConfig, budget_s: float) -> dict[str, Any]:
    by_policy = {p: run_policy(row, p, config, budget_s) for p in POLICIES}
    ours = by_policy[OURS]
    done = [r for r in by_policy.values() if r["status"] == "done"]
    lowest = ours["status"] == "done" and all(ours["avg_jct_s"] <= r["avg_jct_s"] for r in done)
    ratio = {
        "jct": (row.gavel_avg_jct_s, "avg_jct_s"),
        "makespan": (row.gavel_makespan_s, "makespan_s"),
    }
    return {
        "workload": row.name,
        "fleet": row.inputs.fleet.name,
        "jobs": len(row.inputs.jobs),
        "use": row.use,
        "cost": str(config.cost_model),
        "gavel_avg_jct_s": row.gavel_avg_jct_s,
        "gavel_makespan_s": row.gavel_makespan_s,
        **{
            f"ours_over_gavel_{k}": ours[key] / best if best and "avg_jct_s" in ours else None
            for k, (best, key) in ratio.items()
        },
        "ours_lowest_avg_jct": lowest,
        "policies": by_policy,
    }


def cells(p: dict[str, Any]) -> str:
    if p["status"] != "done":
        return f"{p['status']} | | | | | "
    return (
        f"{p['avg_jct_s']:,.0f} | {p['p95_jct_s']:,.0f} | {p['makespan_s']:,.0f} "
        f"| {p['jain_index']:.3f} | {p['preemptions']:,} | {p['lost_gpu_h']:,.1f}"
    )


def goal(res: dict[str, Any], policy: str) -> str:
    if policy != OURS:
        return ""
    if res["ours_over_gavel_jct"] is None:
        return "lowest" if res["ours_lowest_avg_jct"] else "**not lowest**"
    text = f"JCT {res['ours_over_gavel_jct']:.3f} of Gavel's best"
    if res["ours_over_gavel_makespan"] is not None:
        text += f", makespan {res['ours_over_gavel_makespan']:.3f}"
    return text


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | rows | policy | avg JCT s | p95 JCT s | makespan s | Jain | preemptions "
        "| lost GPU-h | ours: goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for name, p in res["policies"].items():
            shown = f"**{name}**" if name == OURS else name
            lines.append(
                f"| {res['workload']} | {res['use']} | {shown} | {cells(p)} | {goal(res, name)} |"
            )
    return "\n".join(lines) + "\n"


def summary(results: list[dict[str, Any]]) -> list[str]:
    """One line per cost model: goals on E1-E3, and where ours is not the lowest."""
    out = []
    for cost in ("free", "realistic"):
        rows = [r for r in results if r["cost"] == cost]
        gavel = [r for r in rows if r["gavel_avg_jct_s"] is not None]
        other = [r for r in rows if r["gavel_avg_jct_s"] is None]
        lost = [r["workload"] for r in other if not r["ours_lowest_avg_jct"]]
        ratios = ", ".join(
            f"{r['workload'].split()[0]} {r['ours_over_gavel_jct'] or math.nan:.3f}" for r in gavel
        )
        out.append(
            f"- `--cost {cost}`: ours / Gavel's best average JCT {ratios}; ours lowest average "
            f"JCT on {len(other) - len(lost)} of {len(other)} other rows"
            + (f" (not on: {', '.join(lost)})" if lost else "")
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="scheduler_quality", help="name of the result files")
    parser.add_argument(
        "--budget-cpu-s", type=float, default=120.0, help="stop a free-cost run after this CPU s"
    )
    parser.add_argument(
        "--realistic-budget-cpu-s",
        type=float,
        default=20.0,
        help="stop a realistic-cost run after this many CPU s",
    )
    parser.add_argument("--only", default="", help="keep rows whose name contains this")
    parser.add_argument("--no-windows", action="store_true", help="skip the Philly windows")
    parser.add_argument("--cost", choices=("both", "free", "realistic"), default="both")
    args = parser.parse_args()
    rows = gavel_rows() + generated_rows(TUNING_SEEDS + HELD_OUT_SEEDS)
    rows += [] if args.no_windows else heldout_rows()
    rows = [r for r in rows if args.only in r.name]
    configs = [c for c in (GAVEL_MATCHED, REALISTIC) if args.cost in ("both", str(c.cost_model))]
    load_before, cpu_before = os.getloadavg()[0], time.process_time()
    budget = {"free": args.budget_cpu_s, "realistic": args.realistic_budget_cpu_s}
    results = [
        run_row(row, config, budget[str(config.cost_model)]) for config in configs for row in rows
    ]
    load, cpu = os.getloadavg()[0], time.process_time() - cpu_before
    RESULTS.mkdir(exist_ok=True)
    settings = {str(c.cost_model): c.settings() for c in configs}
    payload = {
        "command": " ".join(sys.argv),
        "load_1m_before": load_before,
        "load_1m_after": load,
        "cpu_s": cpu,
        "budget_cpu_s": budget,
        "settings": settings,
        "results": results,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    windows = ", ".join(f"{a}-{a + n - 1}" for n, a in HELD_OUT_WINDOWS)
    text = [
        f"# {args.name}\n",
        f"`{payload['command']}`: load average (1 min) {load_before:.1f} before, {load:.1f} "
        f"after; {cpu:,.0f} CPU s in all; a run stops after {budget['free']:.0f} CPU s (free "
        f"cost) or {budget['realistic']:.0f} CPU s (realistic cost).\n",
        "Rows: Gavel's E1-E3 (tuning; goals = Gavel's best average JCT 8,888 / 9,133 / "
        "35,659 s and E3 makespan 64,721 s), generated workloads (seeds "
        f"{', '.join(map(str, TUNING_SEEDS))} tuning, {', '.join(map(str, HELD_OUT_SEEDS))} "
        f"held out) and Philly-derived windows on 36:36:36 (jobs {windows}; held out). "
        "Jain's index is over tenants (1.000 for the single-tenant rows).\n",
        *summary(results),
        "",
    ]
    for config in configs:
        cost = str(config.cost_model)
        text += [f"## --cost {cost}\n", f"Settings: `{json.dumps(config.settings())}`\n"]
        text.append(table([r for r in results if r["cost"] == cost]))
    (RESULTS / f"{args.name}.md").write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
