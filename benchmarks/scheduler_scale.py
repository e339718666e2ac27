"""Scheduler scale benchmark: cycle time, admissions per second and memory.

Two fleets: the demo fleet (1,568 nodes, 12,538 cards) and a synthetic 10,000-node fleet
(80,000 cards in 10 clusters of three chip types), each with 100,000 queued jobs. For each
fleet and policy it measures:

- *fill*: cycles run back to back, admissions applied between cycles, until nothing more
  fits: time per cycle (p50/p99) and admissions per second;
- *saturated*: the fleet full, 100,000 jobs waiting: time per cycle (p50/p99), the case
  where every job is considered and none fits;
- peak memory of one cycle (tracemalloc).

Each series of cycles shares one ``CycleCache`` (as the simulator does), and each cycle
admits at most ``Tuning.max_admissions_per_cycle`` (2,000) jobs, so filling the 10,000-node
fleet takes several cycles. Times are wall clock and, since the development VM is shared,
also CPU time of this process (``time.process_time``), the fairer figure under load.

The baseline is the FIFO policy in the same run (ratio = ours / FIFO time). Kueue's
reported ~10 admissions per minute on a 1,300-node cluster is quoted for context only.

Run: ``.venv/bin/python benchmarks/scheduler_scale.py [--jobs 100000] [--cycles 30]``.
Writes ``benchmarks/results/scheduler_scale.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from suanwang.domain.ids import (
    ChipFamily,
    ChipName,
    ClusterName,
    JobId,
    NodeId,
    RegionName,
    TenantId,
)
from suanwang.scheduler import Admit, NodeView, PendingJob, Snapshot, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.services.catalogue import default_catalogue
from suanwang.services.demo import demo_fleet
from suanwang.services.fleet_file import parse_fleet_data

RESULTS = Path(__file__).parent / "results"
Cycle = Callable[[Snapshot, CycleCache], list[Any]]


def policy_cycles() -> dict[str, Cycle]:
    """The policies to compare: FIFO (baseline) and ours."""
    from suanwang.scheduler.policy import POLICIES, Policy

    def runner(policy: Policy) -> Cycle:
        def run(snapshot: Snapshot, cache: CycleCache) -> list[Any]:
            return list(cycle(snapshot, policy, cache=cache))

        return run

    return {name: runner(POLICIES[name]) for name in ("fifo", "suanwang")}


def demo_nodes() -> list[NodeView]:
    catalogue = default_catalogue()
    spec = parse_fleet_data(demo_fleet(), catalogue)
    nodes, next_id = [], 1
    for cluster in spec.clusters:
        for node in cluster.nodes:
            nodes.append(
                NodeView(
                    id=NodeId(next_id),
                    name=node.name,
                    cluster=cluster.name,
                    region=cluster.region,
                    simulated=True,
                    chip=node.chip,
                    family=catalogue.get(node.chip).family,
                    cards_total=node.cards,
                    cards_free=node.cards,
                    network_group=node.network_group,
                )
            )
            next_id += 1
    return nodes


def big_nodes(count: int = 10_000, clusters: int = 10, regions: int = 2) -> list[NodeView]:
    """``count`` 8-card nodes in ``clusters`` clusters of three chip types (60 % Ascend
    910B, 20 % H20, 20 % MetaX C500) spread over ``regions`` regions."""
    chips = (
        [("ascend-910b", "ascend")] * 6
        + [("nvidia-h20", "nvidia")] * 2
        + [("metax-c500", "metax")] * 2
    )
    nodes = []
    for i in range(count):
        index = i * clusters // count
        chip, family = chips[index * 10 // clusters % 10]
        cluster = f"c{index}"
        nodes.append(
            NodeView(
                id=NodeId(i + 1),
                name=f"n{i}",
                cluster=ClusterName(cluster),
                region=RegionName(f"r{i % regions}" if clusters == 10 else f"r{index % regions}"),
                simulated=True,
                chip=ChipName(chip),
                family=ChipFamily(family),
                cards_total=8,
                cards_free=8,
                network_group=f"{cluster}-g{i // 16}",
            )
        )
    return nodes


def queued_jobs(count: int, seed: int = 7) -> list[PendingJob]:
    rng = random.Random(seed)
    shapes = [(1, 1)] * 5 + [(2, 1)] * 3 + [(4, 1)] * 3 + [(8, 1)] * 4 + [(8, 2)] * 2 + [(8, 4)]
    selectors = ["any", "ascend", "nvidia", "metax", "ascend-910b", "nvidia-h20"]
    jobs = []
    for i in range(count):
        cards, nodes = rng.choice(shapes)
        duration = rng.choice([600.0, 3600.0, 4 * 3600.0, None])
        jobs.append(
            PendingJob(
                id=JobId(f"j{i:06d}"),
                tenant=TenantId(f"t{rng.randrange(20)}"),
                priority=rng.choice([0, 0, 0, 10, 100]),
                seq=i,
                chips=(rng.choice(selectors),),
                cards_per_node=cards,
                nodes=nodes,
                simulated=True,
                duration_s=duration,
                max_runtime_s=duration * 2 if duration else None,
                submitted_at=float(i),
            )
        )
    return jobs


def apply_admissions(
    nodes: list[NodeView], pending: list[PendingJob], decisions: Sequence[Any]
) -> tuple[list[NodeView], list[PendingJob], int]:
    taken: dict[int, int] = {}
    admitted = set()
    for d in decisions:
        if isinstance(d, Admit):
            admitted.add(d.job)
            for p in d.placements:
                taken[p.node] = taken.get(p.node, 0) + p.cards
    if not admitted:
        return nodes, pending, 0
    nodes = [
        dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) if n.id in taken else n
        for n in nodes
    ]
    return nodes, [j for j in pending if j.id not in admitted], len(admitted)


def timed(run: Cycle, snapshot: Snapshot, cache: CycleCache) -> tuple[float, float, list[Any]]:
    started, cpu = time.perf_counter(), time.process_time()
    decisions = run(snapshot, cache)
    return time.perf_counter() - started, time.process_time() - cpu, decisions


def fill(
    run: Cycle, nodes: list[NodeView], jobs: list[PendingJob], max_cycles: int
) -> dict[str, Any]:
    times, cpus, admitted_total, admit_time, admit_cpu = [], [], 0, 0.0, 0.0
    pending, cache = jobs, CycleCache()
    for i in range(max_cycles):
        snapshot = Snapshot(now=float(i), nodes=tuple(nodes), pending=tuple(pending))
        seconds, cpu, decisions = timed(run, snapshot, cache)
        times.append(seconds)
        cpus.append(cpu)
        nodes, pending, admitted = apply_admissions(nodes, pending, decisions)
        if admitted:
            admitted_total += admitted
            admit_time += seconds
            admit_cpu += cpu
        else:
            break
    return {
        "cycles": len(times),
        "admitted": admitted_total,
        "cycle_p50_s": pct(times, 50),
        "cycle_p99_s": pct(times, 99),
        "cycle_cpu_p99_s": pct(cpus, 99),
        "admissions_per_s": admitted_total / admit_time if admit_time else 0.0,
        "admissions_per_cpu_s": admitted_total / admit_cpu if admit_cpu else 0.0,
        "_state": (nodes, pending),
    }


def saturated(
    run: Cycle, nodes: list[NodeView], pending: list[PendingJob], cycles: int
) -> dict[str, Any]:
    snapshot, cache = Snapshot(now=1e6, nodes=tuple(nodes), pending=tuple(pending)), CycleCache()
    runs = [timed(run, snapshot, cache) for _ in range(cycles)]
    times, cpus = [r[0] for r in runs], [r[1] for r in runs]
    tracemalloc.start()
    run(snapshot, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "pending": len(pending),
        "cycle_p50_s": pct(times, 50),
        "cycle_p99_s": pct(times, 99),
        "cycle_cpu_p99_s": pct(cpus, 99),
        "peak_mib": peak / 2**20,
    }


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench(
    fleet: str, nodes: list[NodeView], jobs: list[PendingJob], cycles: int
) -> list[dict[str, Any]]:
    rows = []
    for name, run in policy_cycles().items():
        filled = fill(run, nodes, jobs, max_cycles=200)
        full_nodes, left = filled.pop("_state")
        sat = saturated(run, full_nodes, left, cycles)
        rows.append(
            {
                "fleet": fleet,
                "policy": name,
                "nodes": len(nodes),
                "cards": sum(n.cards_total for n in nodes),
                "jobs": len(jobs),
                "fill": filled,
                "saturated": sat,
            }
        )
        print(
            f"{fleet:>10} {name:>9}: fill p99 {filled['cycle_p99_s']:.3f}s "
            f"(cpu {filled['cycle_cpu_p99_s']:.3f}s) {filled['admissions_per_s']:,.0f} adm/s; "
            f"saturated p99 {sat['cycle_p99_s']:.3f}s (cpu {sat['cycle_cpu_p99_s']:.3f}s) "
            f"peak {sat['peak_mib']:.0f} MiB",
            file=sys.stderr,
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| fleet | policy | nodes | cards | queued | fill cycles | fill p50 s | fill p99 s | "
        "fill CPU p99 s | admissions/s | admissions/CPU s | saturated p50 s | "
        "saturated p99 s | saturated CPU p99 s | peak MiB |",
        "|" + "---|" * 15,
    ]
    for r in rows:
        f, s = r["fill"], r["saturated"]
        lines.append(
            f"| {r['fleet']} | {r['policy']} | {r['nodes']:,} | {r['cards']:,} | {r['jobs']:,} | "
            f"{f['cycles']} | {f['cycle_p50_s']:.3f} | {f['cycle_p99_s']:.3f} | "
            f"{f['cycle_cpu_p99_s']:.3f} | {f['admissions_per_s']:,.0f} | "
            f"{f['admissions_per_cpu_s']:,.0f} | {s['cycle_p50_s']:.3f} | "
            f"{s['cycle_p99_s']:.3f} | {s['cycle_cpu_p99_s']:.3f} | {s['peak_mib']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=20, help="saturated cycles to time")
    args = parser.parse_args()
    jobs = queued_jobs(args.jobs)
    rows = bench("demo", demo_nodes(), jobs, args.cycles) + bench(
        "10k-nodes", big_nodes(), jobs, args.cycles
    )
    by = {(r["fleet"], r["policy"]): r for r in rows}
    ratios = {
        fleet: by[(fleet, "suanwang")]["saturated"]["cycle_p99_s"]
        / by[(fleet, "fifo")]["saturated"]["cycle_p99_s"]
        for fleet in ("demo", "10k-nodes")
        if (fleet, "fifo") in by and (fleet, "suanwang") in by
    }
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": "scheduler_scale",
        "rows": rows,
        "ratio_p99_ours_vs_fifo": ratios,
        "goal": {"cycle_p99_s": 1.0, "admissions_per_s": 1000},
        "context": "Kueue users report ~10 admissions/minute on a 1,300-node cluster",
    }
    (RESULTS / "scheduler_scale.json").write_text(json.dumps(payload, indent=2))
    table = markdown(rows) + "".join(
        f"\nratio p99 ours/FIFO on {k}: {v:.2f}\n" for k, v in ratios.items()
    )
    (RESULTS / "scheduler_scale.md").write_text("# scheduler_scale\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
