"""Running simulations end to end: validate every input, run policies, build reports.

:func:`prepare` reads and checks the fleet, the trace and the quota file before anything
runs (so bad input never leaves partial output); :func:`run_policies` simulates each
policy and computes its metrics; :func:`run_what_if` does so on the fleet before and
after a change. The CLI (``suanwang sim``) is a thin layer over these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suanwang.simulator.engine import SimConfig, simulate
from suanwang.simulator.errors import TraceError
from suanwang.simulator.fleet import QuotaPlan, SimFleet, load_fleet, load_quotas
from suanwang.simulator.metrics import PolicyMetrics, compute_metrics
from suanwang.simulator.policies import resolve_policy
from suanwang.simulator.report import RunReport
from suanwang.simulator.trace import TraceJob, load_trace
from suanwang.simulator.whatif import FleetChange, apply_changes, deltas, describe

RunProgress = Callable[[str, int, int], None]
"""Called with (run label, jobs finished, jobs in the trace)."""


@dataclass(frozen=True, slots=True)
class Inputs:
    """A validated fleet, trace and quota plan."""

    fleet: SimFleet
    jobs: tuple[TraceJob, ...]
    quotas: QuotaPlan | None
    trace_name: str


def prepare(
    fleet_source: str,
    trace_path: Path,
    quotas_path: Path | None = None,
    max_jobs: int | None = None,
) -> Inputs:
    """Load and validate everything a run needs.

    Args:
        fleet_source: A fleet file, or ``demo`` / ``gavel-hetero``.
        trace_path: A ``.jsonl`` or ``.csv`` trace.
        quotas_path: An optional quota file.
        max_jobs: Keep only the first jobs (by submit time).

    Raises:
        SimulationError: any input is invalid (TraceError for trace rows).
    """
    fleet = load_fleet(fleet_source)
    jobs = load_trace(trace_path, fleet.catalogue)
    if max_jobs is not None:
        jobs = jobs[:max_jobs]
    regions = fleet.regions()
    for job in jobs:
        if job.dataset is not None and job.dataset.home not in regions:
            raise TraceError(
                trace_path,
                job.line,
                "dataset.home",
                f"region {job.dataset.home!r} not in the fleet",
            )
    families = {n.family for n in fleet.node_views()}
    quotas = load_quotas(quotas_path, families) if quotas_path else None
    return Inputs(fleet, jobs, quotas, trace_path.name)


def check_policies(names: Sequence[str]) -> None:
    """Raise SimulationError unless every name is a known policy (before anything runs)."""
    for name in names:
        resolve_policy(name)


def run_policies(
    inputs: Inputs,
    policies: Sequence[str],
    config: SimConfig,
    progress: RunProgress | None = None,
    *,
    fleet: SimFleet | None = None,
    quotas: QuotaPlan | None = None,
    label: str = "",
) -> list[PolicyMetrics]:
    """Simulate each policy over the inputs; metrics in the order of ``policies``."""
    resolved = [(name, resolve_policy(name)) for name in policies]
    results: list[PolicyMetrics] = []
    for name, policy in resolved:
        tag = f"{name}{label}"

        def tick(done: int, total: int, tag: str = tag) -> None:
            if progress is not None:
                progress(tag, done, total)

        outcome = simulate(
            fleet or inputs.fleet,
            inputs.jobs,
            policy,
            config,
            quotas=quotas if quotas is not None else inputs.quotas,
            policy_name=name,
            progress=tick,
        )
        results.append(compute_metrics(outcome))
    return results


def run_report(
    inputs: Inputs, policies: Sequence[str], config: SimConfig, progress: RunProgress | None = None
) -> RunReport:
    """Every policy side by side over the same inputs."""
    results = run_policies(inputs, policies, config, progress)
    return RunReport(inputs.fleet.name, inputs.trace_name, config.settings(), results)


@dataclass(frozen=True, slots=True)
class Change:
    """A what-if change, checked: the fleet after it and the quota plan after it."""

    fleet: SimFleet
    quotas: QuotaPlan | None
    description: str


def prepare_change(
    inputs: Inputs, changes: Sequence[FleetChange], quotas_after: QuotaPlan | None = None
) -> Change:
    """Apply ``changes`` to the inputs' fleet (raises SimulationError when one is invalid)."""
    what = [describe(c) for c in changes] + (["other quotas"] if quotas_after else [])
    return Change(apply_changes(inputs.fleet, changes), quotas_after, "; ".join(what))


def run_what_if(
    inputs: Inputs,
    change: Change,
    policies: Sequence[str],
    config: SimConfig,
    progress: RunProgress | None = None,
) -> tuple[RunReport, dict[str, Any]]:
    """Each policy on the fleet before and after a change (see :func:`prepare_change`).

    Returns:
        A report with columns ``policy: before`` and ``policy: after``, and the relative
        differences per policy.
    """
    after_fleet, quotas_after = change.fleet, change.quotas
    before = run_policies(inputs, policies, config, progress, label=": before")
    after = run_policies(
        inputs, policies, config, progress, fleet=after_fleet, quotas=quotas_after, label=": after"
    )
    labels: list[str] = []
    results: list[PolicyMetrics] = []
    for name, b, a in zip(policies, before, after, strict=True):
        labels += [f"{name}: before", f"{name}: after"]
        results += [b, a]
    settings = {**config.settings(), "change": change.description}
    report = RunReport(
        inputs.fleet.name, inputs.trace_name, settings, results, title="What-if", labels=labels
    )
    diffs = {name: deltas(b, a) for name, b, a in zip(policies, before, after, strict=True)}
    return report, diffs
