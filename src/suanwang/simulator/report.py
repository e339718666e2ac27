"""Reports of simulation runs: JSON for machines, a Rich table and an HTML page for people.

A :class:`RunReport` holds the metrics of one or more policies over the same trace and
fleet. :func:`report_json` is its JSON form and :func:`summary_table` a side-by-side Rich
table (one column per policy). The HTML page and writing files are in
:mod:`~suanwang.simulator.page`; printing is the CLI's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.table import Table

from suanwang.domain.ids import ChipName
from suanwang.simulator.metrics import PolicyMetrics, Summary

HOUR_S = 3600.0
Row = tuple[str, Callable[[PolicyMetrics], str]]


@dataclass(frozen=True, slots=True)
class RunReport:
    """The metrics of each policy over one trace on one fleet, with the run's settings."""

    fleet: str
    trace: str
    settings: Mapping[str, object]
    results: Sequence[PolicyMetrics]
    title: str = "Simulation"
    labels: Sequence[str] = field(default_factory=tuple)
    """Column names (default: the policy names); what-if uses ``policy: before``."""

    def columns(self) -> list[str]:
        """One label per result."""
        return list(self.labels) or [m.policy for m in self.results]


def _hours(seconds: float) -> str:
    return f"{seconds / HOUR_S:,.2f} h"


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _summary(pick: Callable[[PolicyMetrics], Summary], part: str) -> Callable[[PolicyMetrics], str]:
    return lambda m: _hours(getattr(pick(m), part))


ROWS: tuple[Row, ...] = (
    ("jobs completed", lambda m: f"{m.completed:,} / {m.jobs:,}"),
    ("avg JCT", _summary(lambda m: m.jct_s, "avg")),
    ("median JCT", _summary(lambda m: m.jct_s, "median")),
    ("p95 JCT", _summary(lambda m: m.jct_s, "p95")),
    ("avg queueing", _summary(lambda m: m.queueing_s, "avg")),
    ("p95 queueing", _summary(lambda m: m.queueing_s, "p95")),
    ("avg slowdown", lambda m: f"{m.slowdown.avg:,.2f}"),
    ("makespan", lambda m: _hours(m.makespan_s)),
    ("Jain (tenant slowdown)", lambda m: f"{m.jain_index:.3f}"),
    ("Jain (finish-time fairness)", lambda m: f"{m.jain_ftf:.3f}"),
    ("worst tenant rho", lambda m: f"{m.max_ftf:,.2f}"),
    ("preemptions", lambda m: f"{m.preemptions:,}"),
    ("lost work", lambda m: f"{m.lost_card_s / HOUR_S:,.1f} card-h"),
    ("data staged", lambda m: f"{m.bytes_staged / 1e9:,.1f} GB in {m.transfers:,}"),
    ("cycles", lambda m: f"{m.cycles:,}"),
    ("wall time", lambda m: f"{m.wall_s:,.1f} s ({m.jobs_per_s:,.0f} jobs/s)"),
)


def _utilisation_of(chip: str) -> Callable[[PolicyMetrics], str]:
    return lambda m: _pct(m.utilisation.get(ChipName(chip), 0.0))


def rows(report: RunReport) -> list[Row]:
    """The summary rows: :data:`ROWS` with one utilisation row per chip type after makespan."""
    chips = sorted({chip for m in report.results for chip in m.utilisation})
    per_chip = [(f"utilisation {chip}", _utilisation_of(chip)) for chip in chips]
    split = next(i for i, (name, _) in enumerate(ROWS) if name == "makespan") + 1
    return [*ROWS[:split], *per_chip, *ROWS[split:]]


def settings_line(report: RunReport) -> str:
    """The settings a run used, on one line (``mode: gavel-matched, cost_model: free, …``)."""
    return "settings: " + ", ".join(f"{k}: {v}" for k, v in report.settings.items())


def summary_table(report: RunReport) -> Table:
    """A Rich table: one row per metric, one column per policy (or scenario)."""
    table = Table(
        title=f"{report.title}: {report.trace} on {report.fleet}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("metric")
    for label in report.columns():
        table.add_column(label, justify="right", overflow="fold")
    for name, render in rows(report):
        table.add_row(name, *(render(m) for m in report.results))
    return table


def _summary_json(summary: Summary) -> dict[str, float]:
    return {"avg": summary.avg, "median": summary.median, "p95": summary.p95}


def metrics_json(m: PolicyMetrics) -> dict[str, Any]:
    """One policy's metrics as JSON-ready data (times in seconds)."""
    return {
        "policy": m.policy,
        "jobs": m.jobs,
        "completed": m.completed,
        "unschedulable": m.unschedulable,
        "jct_s": _summary_json(m.jct_s),
        "queueing_s": _summary_json(m.queueing_s),
        "slowdown": _summary_json(m.slowdown),
        "makespan_s": m.makespan_s,
        "utilisation": dict(m.utilisation),
        "utilisation_series": {
            "start_s": list(m.series_times_s),
            "by_chip": {chip: list(values) for chip, values in m.series.items()},
        },
        "tenants": [
            {
                "tenant": t.tenant,
                "jobs": t.jobs,
                "completed": t.completed,
                "avg_jct_s": t.avg_jct_s,
                "avg_slowdown": t.avg_slowdown,
                "card_s": t.card_s,
                "share": t.share,
                "ftf": t.ftf,
            }
            for t in m.tenants
        ],
        "jain_index": m.jain_index,
        "jain_over": "per-tenant average slowdown",
        "jain_ftf": m.jain_ftf,
        "max_ftf": m.max_ftf,
        "ftf": "per-tenant sum of JCT / sum of reference run time (Themis-style rho)",
        "preemptions": m.preemptions,
        "lost_card_s": m.lost_card_s,
        "lost_work_s": m.lost_work_s,
        "overhead_card_s": m.overhead_card_s,
        "bytes_staged": m.bytes_staged,
        "transfers": m.transfers,
        "allocated_card_s": m.allocated_card_s,
        "cycles": m.cycles,
        "wall_s": m.wall_s,
        "policy_wall_s": m.policy_wall_s,
        "jobs_per_s": m.jobs_per_s,
        "jct_cdf_s": list(m.jct_cdf_s),
    }


def report_json(report: RunReport) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    return {
        "title": report.title,
        "fleet": report.fleet,
        "trace": report.trace,
        "settings": dict(report.settings),
        "results": {
            label: metrics_json(m)
            for label, m in zip(report.columns(), report.results, strict=True)
        },
    }
