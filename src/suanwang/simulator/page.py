"""The HTML page of a simulation report, and writing a report's files.

:func:`html_report` renders a :class:`~suanwang.simulator.report.RunReport`: the settings,
the side-by-side summary table, a JCT CDF per policy, utilisation per chip type over time
for each policy, and per-tenant results; no scripts, no external assets.
:func:`write_report` writes ``results.json`` and ``report.html``.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from suanwang.simulator.metrics import PolicyMetrics
from suanwang.simulator.report import HOUR_S, RunReport, report_json, rows
from suanwang.simulator.svg import line_chart

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def html_report(report: RunReport) -> str:
    """The report as one HTML page."""
    labels = report.columns()
    body = [
        f"<h1>{escape(report.title)}</h1>",
        f"<p>Trace <b>{escape(report.trace)}</b> on fleet <b>{escape(report.fleet)}</b>. "
        + ", ".join(f"{escape(k)}: {escape(str(v))}" for k, v in report.settings.items())
        + ".</p>",
        _summary_html(report, labels),
        '<h2>Job completion time</h2><div class="charts">',
        _cdf_chart(report, labels),
        '</div><h2>Utilisation by chip type</h2><div class="charts">',
        *(_utilisation_chart(label, m) for label, m in zip(labels, report.results, strict=True)),
        "</div><h2>Tenants</h2>",
        *(_tenants_html(label, m) for label, m in zip(labels, report.results, strict=True)),
        "<p><small>Jain's index is over each tenant's average slowdown (JCT / run time "
        "alone on the reference chip). Philly-derived traces: Microsoft Research (CC BY "
        "4.0) and Stanford Future Data Systems, Gavel (MIT).</small></p>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(report.title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _summary_html(report: RunReport, labels: list[str]) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for label in labels)
    lines = [f"<tr><th>metric</th>{head}</tr>"]
    for name, render in rows(report):
        cells = "".join(f"<td>{escape(render(m))}</td>" for m in report.results)
        lines.append(f"<tr><td>{escape(name)}</td>{cells}</tr>")
    return "<table>" + "".join(lines) + "</table>"


CDF_TOP_PERCENT = 99
"""The CDF stops at this percentile: the longest jobs would squash the rest."""


def _cdf_chart(report: RunReport, labels: list[str]) -> str:
    series = {
        label: [(jct / HOUR_S, q / 100) for q, jct in enumerate(m.jct_cdf_s[: CDF_TOP_PERCENT + 1])]
        for label, m in zip(labels, report.results, strict=True)
        if len(m.jct_cdf_s) > CDF_TOP_PERCENT
    }
    return line_chart(
        f"JCT CDF (up to p{CDF_TOP_PERCENT})",
        series,
        x_label="JCT (hours)",
        y_label="fraction of jobs",
        y_max=1.0,
    )


def _utilisation_chart(label: str, m: PolicyMetrics) -> str:
    series = {
        str(chip): [(t / HOUR_S, u) for t, u in zip(m.series_times_s, values, strict=True)]
        for chip, values in m.series.items()
    }
    return line_chart(
        f"Utilisation: {label}",
        series,
        x_label="time (hours)",
        y_label="cards held",
        y_format=lambda v: f"{100 * v:.0f}%",
        y_max=1.0,
    )


def _tenants_html(label: str, m: PolicyMetrics) -> str:
    lines = [
        "<tr><th>tenant</th><th>jobs</th><th>completed</th><th>avg JCT (h)</th>"
        "<th>avg slowdown</th><th>rho (finish-time fairness)</th>"
        "<th>share of card-hours</th></tr>"
    ]
    for t in m.tenants:
        lines.append(
            f"<tr><td>{escape(t.tenant)}</td><td>{t.jobs:,}</td><td>{t.completed:,}</td>"
            f"<td>{t.avg_jct_s / HOUR_S:,.2f}</td><td>{t.avg_slowdown:,.2f}</td>"
            f"<td>{t.ftf:,.2f}</td>"
            f"<td>{100 * t.share:.1f} %</td></tr>"
        )
    return (
        f"<h3>{escape(label)} (Jain over slowdown {m.jain_index:.3f}, over rho "
        f"{m.jain_ftf:.3f}, worst rho {m.max_ftf:,.2f})</h3><table>" + "".join(lines) + "</table>"
    )


def write_report(report: RunReport, out_dir: Path) -> dict[str, Path]:
    """Write ``results.json`` and ``report.html`` under ``out_dir``; return their paths.

    Each file is written to a temporary name and renamed, so a reader never sees half.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": (out_dir / "results.json", json.dumps(report_json(report), indent=2) + "\n"),
        "html": (out_dir / "report.html", html_report(report)),
    }
    for path, text in files.values():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return {kind: path for kind, (path, _) in files.items()}
