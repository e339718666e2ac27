"""Scheduler scale benchmark: cycle time, admissions per second and memory.

Three fleets: the demo fleet (1,568 nodes, 12,538 cards) and a synthetic 10,000-node fleet
(80,000 cards in 10 clusters of three chip types), each with 100,000 queued jobs; and a
*national* fleet of 100,000 nodes (800,000 cards in 40 clusters over 8 regions) with
1,000,000 queued jobs. For each fleet and policy it measures:

- *fill*: cycles run back to back, admissions applied between cycles, until nothing more
  fits: time per cycle (p50/p99) and admissions per second (over every fill cycle, the
  cold one included). The first cycle of a series
  is reported apart (*cold*): it builds what the ``CycleCache`` keeps (pools, the queue
  index), a cost paid once when a control plane or simulator starts, not per cycle;
- *saturated*: the fleet full, the rest of the queue waiting, ``--churn`` jobs cancelled
  and as many submitted before each cycle and the clock moving on: time per cycle
  (p50/p99), the case where every job is considered and none fits;
- peak memory of one cycle (tracemalloc);
- on the national fleet under ``suanwang``, the *reallocation round*
  (``scheduler/realloc.py``, run on its own round): the filled fleet's jobs running,
  chip speeds that differ and 1 % of the fast nodes free, time per round.

Python's cyclic garbage collector is paused for the run (``--gc paused``, the default),
as the simulator's engine pauses it for a simulation: with 1,000,000 queued jobs alive a
full collection walks them all (~0.5 s on the development VM) whenever enough young
objects have survived, wherever that happens to fall, and the young collections walk
every fresh million-job tuple of a snapshot. On the national fleet under ``suanwang`` the
fill is also run with the collector on (Python's default thresholds), and the full
collections that fell inside its cycles are counted and timed; ``--gc on`` runs every
row that way.

Each series of cycles shares one ``CycleCache`` (as the simulator and the control loop
do), and each cycle admits at most ``Tuning.max_admissions_per_cycle`` (2,000) jobs, so
filling a fleet takes several cycles. Times are wall clock and, since the development VM
is shared, also CPU time of this process (``time.process_time``), the fairer figure
under load; every row records the load average before it ran.

The baseline is the FIFO policy in the same run (ratio = ours / FIFO time). Kueue's
reported ~10 admissions per minute on a 1,300-node cluster is quoted for context only.

Run: ``.venv/bin/python benchmarks/scheduler_scale.py [--jobs 100000] [--cycles 20]
[--fleets demo,10k-nodes,national] [--policies fifo,suanwang] [--gc paused|on]``. Writes
``benchmarks/results/scheduler_scale.json`` and ``.md``; rows not run are kept from the
last results.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cycle_clock import Cycle, FullCollections, timed

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
from suanwang.scheduler.decisions import Placement
from suanwang.scheduler.policy import POLICIES
from suanwang.scheduler.realloc import MoveCost, reallocate
from suanwang.scheduler.snapshot import RunningJob
from suanwang.services.catalogue import default_catalogue
from suanwang.services.demo import demo_fleet
from suanwang.services.fleet_file import parse_fleet_data

RESULTS = Path(__file__).parent / "results"


def policy_cycles(names: Sequence[str] = ("fifo", "suanwang")) -> dict[str, Cycle]:
    """The policies to compare: FIFO (baseline) and ours."""
    from suanwang.scheduler.policy import Policy

    def runner(policy: Policy) -> Cycle:
        def run(snapshot: Snapshot, cache: CycleCache) -> list[Any]:
            return list(cycle(snapshot, policy, cache=cache))

        return run

    return {name: runner(POLICIES[name]) for name in names}


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


def queued_jobs(count: int, seed: int = 7, start: int = 0) -> list[PendingJob]:
    """``count`` jobs of six gang shapes and six chip selectors, 20 tenants; ids, ``seq``
    and submit times from ``start`` on (later jobs are submitted later)."""
    rng = random.Random(seed)
    shapes = [(1, 1)] * 5 + [(2, 1)] * 3 + [(4, 1)] * 3 + [(8, 1)] * 4 + [(8, 2)] * 2 + [(8, 4)]
    selectors = ["any", "ascend", "nvidia", "metax", "ascend-910b", "nvidia-h20"]
    jobs = []
    for i in range(start, start + count):
        cards, nodes = rng.choice(shapes)
        duration = rng.choice([600.0, 3600.0, 4 * 3600.0, None])
        jobs.append(
            PendingJob(
                id=JobId(f"j{i:07d}"),
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
) -> tuple[list[NodeView], list[PendingJob], list[Admit]]:
    taken: dict[int, int] = {}
    admits = [d for d in decisions if isinstance(d, Admit)]
    for admit in admits:
        for p in admit.placements:
            taken[p.node] = taken.get(p.node, 0) + p.cards
    if not admits:
        return nodes, pending, admits
    admitted = {a.job for a in admits}
    nodes = [
        dataclasses.replace(n, cards_free=n.cards_free - taken[n.id]) if n.id in taken else n
        for n in nodes
    ]
    return nodes, [j for j in pending if j.id not in admitted], admits


def fill(
    run: Cycle,
    nodes: list[NodeView],
    jobs: list[PendingJob],
    max_cycles: int,
    full: FullCollections | None = None,
) -> dict[str, Any]:
    """Cycles until nothing more fits; the first (cold) one reported apart."""
    times, cpus, admitted_total, admit_time, admit_cpu = [], [], 0, 0.0, 0.0
    pending, cache, started = jobs, CycleCache(), []
    for i in range(max_cycles):
        snapshot = Snapshot(now=float(i), nodes=tuple(nodes), pending=tuple(pending))
        seconds, cpu, decisions = timed(run, snapshot, cache, full)
        times.append(seconds)
        cpus.append(cpu)
        nodes, pending, admits = apply_admissions(nodes, pending, decisions)
        started += [(admit, float(i)) for admit in admits]
        if not admits:
            break
        admitted_total += len(admits)
        admit_time += seconds
        admit_cpu += cpu
    warm, warm_cpu = times[1:] or times, cpus[1:] or cpus
    return {
        "cycles": len(times),
        "admitted": admitted_total,
        "cold_s": times[0],
        "cold_cpu_s": cpus[0],
        "cycle_p50_s": pct(warm, 50),
        "cycle_p99_s": pct(warm, 99),
        "cycle_cpu_p50_s": pct(warm_cpu, 50),
        "cycle_cpu_p99_s": pct(warm_cpu, 99),
        "cycle_cpu_max_s": max(warm_cpu),
        "admissions_per_s": admitted_total / admit_time if admit_time else 0.0,
        "admissions_per_cpu_s": admitted_total / admit_cpu if admit_cpu else 0.0,
        "_state": (nodes, pending, started),
    }


def saturated(
    run: Cycle, nodes: list[NodeView], pending: list[PendingJob], cycles: int, churn: int
) -> dict[str, Any]:
    """Cycles over a full fleet; before each, ``churn`` jobs cancelled and submitted."""
    cache, queue, times, cpus = CycleCache(), list(pending), [], []
    run(Snapshot(now=1e6, nodes=tuple(nodes), pending=tuple(queue)), cache)  # cold
    rng, next_id = random.Random(11), 10_000_000
    for i in range(1, cycles + 1):
        for _ in range(min(churn, len(queue))):
            queue.pop(rng.randrange(len(queue)))
        queue += queued_jobs(churn, seed=i, start=next_id)
        next_id += churn
        snapshot = Snapshot(now=1e6 + i, nodes=tuple(nodes), pending=tuple(queue))
        seconds, cpu, _decisions = timed(run, snapshot, cache)
        times.append(seconds)
        cpus.append(cpu)
    tracemalloc.start()
    run(Snapshot(now=1e6 + cycles + 1, nodes=tuple(nodes), pending=tuple(queue)), cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "pending": len(queue),
        "churn_per_cycle": churn,
        "cycle_p50_s": pct(times, 50),
        "cycle_p99_s": pct(times, 99),
        "cycle_cpu_p99_s": pct(cpus, 99),
        "peak_mib": peak / 2**20,
    }


SPEEDS = {ChipName("ascend-910b"): 1.0, ChipName("nvidia-h20"): 2.0, ChipName("metax-c500"): 0.5}


def realloc_rounds(
    nodes: list[NodeView], jobs: list[PendingJob], started: list[tuple[Admit, float]], rounds: int
) -> dict[str, Any]:
    """Reallocation rounds over the filled fleet: every admitted job running (expected
    end from its duration), speeds that differ, the jobs on 1 % of the H20 nodes gone."""
    by_id = {j.id: j for j in jobs}
    h20 = [n.id for n in nodes if n.chip == "nvidia-h20"]
    freed = set(h20[: max(1, len(h20) // 100)])
    running: list[RunningJob] = []
    now = 1_000.0
    for admit, at in started:
        if any(p.node in freed for p in admit.placements):
            continue
        request = by_id[admit.job]
        duration = request.duration_s or 4 * 3600.0
        running.append(
            RunningJob(
                id=request.id,
                tenant=request.tenant,
                priority=request.priority,
                cluster=admit.cluster,
                chip=admit.chip,
                family=admit.family,
                placements=tuple(Placement(p.node, p.cards) for p in admit.placements),
                started_at=at,
                expected_end=at + duration / SPEEDS[admit.chip],
                checkpoint_interval_s=600.0,
                request=request,
            )
        )
    held: dict[int, int] = {}
    for job in running:
        for p in job.placements:
            held[p.node] = held.get(p.node, 0) + p.cards
    fleet = tuple(
        dataclasses.replace(n, cards_free=n.cards_total - held.get(n.id, 0)) for n in nodes
    )
    snapshot = Snapshot(now=now, nodes=fleet, pending=(), running=tuple(running), chip_speed=SPEEDS)
    times, cpus, moves = [], [], 0
    for _ in range(rounds):
        begun, cpu = time.perf_counter(), time.process_time()
        decisions = reallocate(snapshot, POLICIES["suanwang"], MoveCost())
        times.append(time.perf_counter() - begun)
        cpus.append(time.process_time() - cpu)
        moves = sum(isinstance(d, Admit) for d in decisions)
    return {
        "running": len(running),
        "free_nodes": len(freed),
        "rounds": rounds,
        "round_p50_s": pct(times, 50),
        "round_max_s": max(times),
        "round_cpu_max_s": max(cpus),
        "moves": moves,
    }


def fill_collecting(run: Cycle, nodes: list[NodeView], jobs: list[PendingJob]) -> dict[str, Any]:
    """The fill again with the garbage collector on, its full collections counted."""
    gc.collect()
    gc.enable()
    try:
        with FullCollections() as full:
            filled = fill(run, nodes, jobs, max_cycles=400, full=full)
    finally:
        gc.disable()
    filled.pop("_state")
    return {
        "load_before": os.getloadavg()[0],
        "cycle_cpu_p50_s": filled["cycle_cpu_p50_s"],
        "cycle_cpu_p99_s": filled["cycle_cpu_p99_s"],
        "cycle_p99_s": filled["cycle_p99_s"],
        "admissions_per_cpu_s": filled["admissions_per_cpu_s"],
        "cycles": filled["cycles"],
        "full_collections": full.count,
        "full_collection_cpu_s": full.cpu_s,
    }


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def bench(
    fleet: str,
    nodes: list[NodeView],
    jobs: list[PendingJob],
    cycles: int,
    churn: int,
    policies: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for name, run in policy_cycles(policies).items():
        load = os.getloadavg()[0]
        filled = fill(run, nodes, jobs, max_cycles=400)
        full_nodes, left, started = filled.pop("_state")
        sat = saturated(run, full_nodes, left, cycles, churn)
        row: dict[str, Any] = {
            "fleet": fleet,
            "policy": name,
            "nodes": len(nodes),
            "cards": sum(n.cards_total for n in nodes),
            "jobs": len(jobs),
            "fill": filled,
            "saturated": sat,
            "load_before": load,
            "load_after": os.getloadavg()[0],
            "gc": "on" if gc.isenabled() else "paused",
            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        if fleet == "national" and name == "suanwang":
            row["realloc"] = realloc_rounds(nodes, jobs, started, rounds=3)
            if not gc.isenabled():
                row["fill_gc_on"] = fill_collecting(run, nodes, jobs)
        rows.append(row)
        print(
            f"{fleet:>10} {name:>9}: cold {filled['cold_s']:.2f}s; fill p99 "
            f"{filled['cycle_p99_s']:.3f}s (cpu {filled['cycle_cpu_p99_s']:.3f}s) "
            f"{filled['admissions_per_s']:,.0f} adm/s; saturated p99 {sat['cycle_p99_s']:.3f}s "
            f"(cpu {sat['cycle_cpu_p99_s']:.3f}s) peak {sat['peak_mib']:.0f} MiB; "
            f"load {load:.1f}-{row['load_after']:.1f}",
            file=sys.stderr,
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| fleet | policy | nodes | cards | queued | fill cycles | cold s (CPU) | fill p50 s | "
        "fill p99 s | fill CPU p99 s | admissions/s | admissions/CPU s | saturated p50 s | "
        "saturated p99 s | saturated CPU p99 s | peak MiB | load | gc |",
        "|" + "---|" * 18,
    ]
    for r in rows:
        f, s = r["fill"], r["saturated"]
        lines.append(
            f"| {r['fleet']} | {r['policy']} | {r['nodes']:,} | {r['cards']:,} | {r['jobs']:,} | "
            f"{f['cycles']} | {f['cold_s']:.2f} ({f['cold_cpu_s']:.2f}) | "
            f"{f['cycle_p50_s']:.3f} | {f['cycle_p99_s']:.3f} | "
            f"{f['cycle_cpu_p99_s']:.3f} | {f['admissions_per_s']:,.0f} | "
            f"{f['admissions_per_cpu_s']:,.0f} | {s['cycle_p50_s']:.3f} | "
            f"{s['cycle_p99_s']:.3f} | {s['cycle_cpu_p99_s']:.3f} | {s['peak_mib']:.0f} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} | {r.get('gc', 'on')} |"
        )
    for r in rows:
        if "fill_gc_on" in r:
            g = r["fill_gc_on"]
            each = (
                g["full_collection_cpu_s"] / g["full_collections"] if g["full_collections"] else 0
            )
            lines.append(
                f"\nFill on {r['fleet']} ({r['policy']}) with the garbage collector on (Python's "
                f"default thresholds; the table: paused for the run, as the simulator does): "
                f"CPU p50 {g['cycle_cpu_p50_s']:.3f} s, p99 {g['cycle_cpu_p99_s']:.3f} s "
                f"(wall p99 {g['cycle_p99_s']:.3f} s), {g['admissions_per_cpu_s']:,.0f} "
                f"admissions/CPU s; {g['full_collections']} full collections fell inside its "
                f"{g['cycles']} cycles, {each:.2f} CPU s each; load {g['load_before']:.1f}."
            )
        if "realloc" in r:
            m = r["realloc"]
            lines.append(
                f"\nReallocation round on {r['fleet']} ({m['running']:,} running jobs, "
                f"{m['free_nodes']} free nodes, {m['rounds']} rounds): p50 "
                f"{m['round_p50_s']:.2f} s, max {m['round_max_s']:.2f} s (CPU max "
                f"{m['round_cpu_max_s']:.2f} s), {m['moves']} moves per round."
            )
    return "\n".join(lines) + "\n"


FLEETS = ("demo", "10k-nodes", "national")


def fleet_of(name: str, jobs: int) -> tuple[list[NodeView], list[PendingJob]]:
    if name == "demo":
        return demo_nodes(), queued_jobs(jobs)
    if name == "10k-nodes":
        return big_nodes(), queued_jobs(jobs)
    return big_nodes(100_000, clusters=40, regions=8), queued_jobs(1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="queued on demo and 10k")
    parser.add_argument("--cycles", type=int, default=20, help="saturated cycles to time")
    parser.add_argument("--churn", type=int, default=100, help="jobs in and out per cycle")
    parser.add_argument(
        "--fleets", default=",".join(FLEETS), help="comma-separated ('' = rewrite the tables)"
    )
    parser.add_argument("--policies", default="fifo,suanwang", help="comma-separated")
    parser.add_argument(
        "--gc",
        choices=("paused", "on"),
        default="paused",
        help="the garbage collector during the run (paused: as the simulator runs)",
    )
    args = parser.parse_args()
    if args.gc == "paused":
        gc.disable()
    chosen = [f for f in args.fleets.split(",") if f]
    policies = [p for p in args.policies.split(",") if p]
    rows: list[dict[str, Any]] = []
    for name in chosen:
        nodes, jobs = fleet_of(name, args.jobs)
        rows += bench(name, nodes, jobs, args.cycles, args.churn, policies)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scheduler_scale.json"
    kept = json.loads(path.read_text())["rows"] if path.exists() else []
    ran = {(r["fleet"], r["policy"]) for r in rows}
    kept = [r for r in kept if (r["fleet"], r["policy"]) not in ran and "cold_s" in r["fill"]]
    rows = sorted(kept + rows, key=lambda r: (FLEETS.index(r["fleet"]), r["policy"]))
    by = {(r["fleet"], r["policy"]): r for r in rows}
    ratios = {
        f"{fleet} {clock}": by[(fleet, "suanwang")]["saturated"][field]
        / by[(fleet, "fifo")]["saturated"][field]
        for fleet in FLEETS
        for clock, field in (("wall", "cycle_p99_s"), ("CPU", "cycle_cpu_p99_s"))
        if (fleet, "fifo") in by and (fleet, "suanwang") in by
    }
    payload = {
        "benchmark": "scheduler_scale",
        "rows": rows,
        "ratio_p99_ours_vs_fifo": ratios,
        "goal": {"cycle_p99_s": 1.0, "admissions_per_s": 1000},
        "context": "Kueue users report ~10 admissions/minute on a 1,300-node cluster",
    }
    path.write_text(json.dumps(payload, indent=2))
    table = markdown(rows) + "".join(
        f"\nratio saturated p99 ours/FIFO on {k}: {v:.2f}\n" for k, v in ratios.items()
    )
    (RESULTS / "scheduler_scale.md").write_text("# scheduler_scale\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
