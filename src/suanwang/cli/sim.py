"""``suanwang sim …``: replay job traces through the scheduler on a virtual clock, locally.

No server is needed. ``run`` compares policies on a fleet, ``what-if`` compares a fleet
before and after a change, ``import-philly`` converts the public Philly-derived trace.
Bad input ends as one ``error: …`` line with exit code 1, before any output is written.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, emit_json, err, out, say, state
from suanwang.domain.errors import DomainError

if TYPE_CHECKING:
    from suanwang.simulator.engine import SimConfig
    from suanwang.simulator.runner import RunProgress

# The simulator is imported inside the commands, so other commands start fast; these
# choices mirror suanwang.simulator.state.CostModel and importers.FleetKind.
REFERENCE_CHIP = "nvidia-v100"


class Cost(enum.StrEnum):
    """``--cost``: what preempting a job costs (see CostModel)."""

    REALISTIC = "realistic"
    FREE = "free"


class FleetKindChoice(enum.StrEnum):
    """``--fleet-kind``: which fleet imported speeds are for (see FleetKind)."""

    GAVEL = "gavel"
    DEMO = "demo"


sim_app = typer.Typer(
    help="Simulate the scheduler on job traces (locally, on a virtual clock).",
    no_args_is_help=True,
)

FleetOpt = Annotated[
    str, typer.Option(help="fleet file (YAML), or demo, gavel-hetero, gavel-hetero-768")
]
TraceOpt = Annotated[Path, typer.Option(help="trace file (.jsonl or .csv)")]
PolicyOpt = Annotated[
    list[str] | None,
    typer.Option("--policy", help="policy name (repeat to compare); default: every policy"),
]
CostOpt = Annotated[Cost, typer.Option("--cost", help="cost of preemption")]
RestartOpt = Annotated[
    float, typer.Option(min=0, help="seconds a preempted job waits before it resumes")
]
IntervalOpt = Annotated[
    float, typer.Option(min=0, help="seconds between scheduling cycles (0: on every event)")
]
QuotasOpt = Annotated[Path | None, typer.Option(help="quota file (YAML)")]
MaxJobsOpt = Annotated[int | None, typer.Option(min=1, help="only the first N jobs")]
ReferenceOpt = Annotated[
    str, typer.Option(help="the chip trace durations were measured on (speed 1.0)")
]
GavelOpt = Annotated[
    bool,
    typer.Option(
        "--compare-gavel",
        help="Gavel-matched mode, for like-for-like comparison with Gavel's simulator: "
        "--cost free --restart-delay-s 0 --decision-interval-s 360 --reference-chip "
        "nvidia-v100 (6-minute rounds, moving a job costs nothing); cannot be combined "
        "with those options",
    ),
]
_GAVEL_SET = ("cost", "restart_delay_s", "decision_interval_s", "reference_chip")


@contextmanager
def _as_cli_errors() -> Iterator[None]:
    """Turn expected simulator and file errors into one-line CLI errors."""
    try:
        yield
    except DomainError as exc:
        raise CliError(exc.message, field=exc.field, hint=exc.hint) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or 'file'}: {exc.strerror or exc}") from None


@contextmanager
def _progress_bar() -> Iterator[RunProgress]:
    """A Rich progress bar on stderr, one line per run (hidden when not a terminal)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(
        *columns, TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal
    )
    with progress as bar:
        tasks: dict[str, TaskID] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)

        yield update


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _config(
    ctx: typer.Context,
    compare_gavel: bool,
    cost: Cost,
    restart: float,
    interval: float,
    reference: str,
) -> SimConfig:
    from suanwang.simulator.engine import GAVEL_MATCHED, SimConfig
    from suanwang.simulator.state import CostModel

    if compare_gavel:
        given = [f"--{name.replace('_', '-')}" for name in _GAVEL_SET if _given(ctx, name)]
        if given:
            raise CliError(
                f"--compare-gavel sets {', '.join(given)} itself",
                field="--compare-gavel",
                hint="drop those options, or drop --compare-gavel and set each one",
            )
        return GAVEL_MATCHED
    return SimConfig(
        cost_model=CostModel(cost),
        restart_delay_s=restart,
        decision_interval_s=interval,
        reference_chip=reference,
    )


def _policies(names: list[str] | None) -> list[str]:
    from suanwang.simulator.policies import DEFAULT_POLICY, available_policies

    chosen = names or [p for p in available_policies() if p != DEFAULT_POLICY]
    return list(dict.fromkeys(chosen))


@sim_app.command("run")
def run(
    ctx: typer.Context,
    fleet: FleetOpt,
    trace: TraceOpt,
    policy: PolicyOpt = None,
    cost: CostOpt = Cost.REALISTIC,
    restart_delay_s: RestartOpt = 30.0,
    decision_interval_s: IntervalOpt = 60.0,
    quotas: QuotasOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for results")] = Path(
        "sim-results"
    ),
    max_jobs: MaxJobsOpt = None,
    reference_chip: ReferenceOpt = REFERENCE_CHIP,
    compare_gavel: GavelOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay TRACE on FLEET under each policy; write results.json and report.html."""
    from suanwang.simulator.page import write_report
    from suanwang.simulator.report import report_json, settings_line, summary_table
    from suanwang.simulator.runner import check_policies, prepare, run_report

    with _as_cli_errors():
        names = _policies(policy)
        check_policies(names)
        inputs = prepare(fleet, trace, quotas, max_jobs)
        config = _config(
            ctx, compare_gavel, cost, restart_delay_s, decision_interval_s, reference_chip
        )
        with _progress_bar() as progress:
            report = run_report(inputs, names, config, progress)
        files = write_report(report, out_dir)
    if state(ctx, as_json).json:
        emit_json(report_json(report))
        return
    out.print(summary_table(report))
    say(settings_line(report))
    say(f"wrote {files['json']} and {files['html']}")


@sim_app.command("what-if")
def what_if(
    ctx: typer.Context,
    fleet: FleetOpt,
    trace: TraceOpt,
    add_cards: Annotated[
        list[str] | None, typer.Option(help="CARDS:CHIP:REGION to add (whole nodes)")
    ] = None,
    remove_cards: Annotated[
        list[str] | None, typer.Option(help="CARDS:CHIP:REGION to remove (whole nodes)")
    ] = None,
    link_bandwidth: Annotated[
        list[str] | None, typer.Option(help="REGION:REGION:GBPS for a WAN link")
    ] = None,
    quotas: QuotasOpt = None,
    quotas_after: Annotated[Path | None, typer.Option(help="quota file after the change")] = None,
    policy: PolicyOpt = None,
    cost: CostOpt = Cost.REALISTIC,
    restart_delay_s: RestartOpt = 30.0,
    decision_interval_s: IntervalOpt = 60.0,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for results")] = Path(
        "sim-results/what-if"
    ),
    max_jobs: MaxJobsOpt = None,
    reference_chip: ReferenceOpt = REFERENCE_CHIP,
    compare_gavel: GavelOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay TRACE on FLEET with and without a change; show the difference side by side."""
    from suanwang.simulator.fleet import load_quotas
    from suanwang.simulator.page import write_report
    from suanwang.simulator.report import report_json, settings_line, summary_table
    from suanwang.simulator.runner import check_policies, prepare, prepare_change, run_what_if
    from suanwang.simulator.whatif import (
        FleetChange,
        delta_table,
        parse_cards_change,
        parse_link_change,
    )

    with _as_cli_errors():
        changes: list[FleetChange] = [
            *(parse_cards_change(c, "--add-cards") for c in add_cards or []),
            *(parse_cards_change(c, "--remove-cards") for c in remove_cards or []),
            *(parse_link_change(c) for c in link_bandwidth or []),
        ]
        if not changes and quotas_after is None:
            raise CliError(
                "no change given",
                hint="pass --add-cards, --remove-cards, --link-bandwidth or --quotas-after",
            )
        names = _policies(policy)
        check_policies(names)
        inputs = prepare(fleet, trace, quotas, max_jobs)
        families = {n.family for n in inputs.fleet.node_views()}
        after = load_quotas(quotas_after, families) if quotas_after else None
        change = prepare_change(inputs, changes, after)
        config = _config(
            ctx, compare_gavel, cost, restart_delay_s, decision_interval_s, reference_chip
        )
        with _progress_bar() as progress:
            report, diffs = run_what_if(inputs, change, names, config, progress)
        files = write_report(report, out_dir)
    if state(ctx, as_json).json:
        emit_json({**report_json(report), "differences": diffs})
        return
    out.print(summary_table(report))
    out.print(delta_table(list(diffs.items())))
    say(settings_line(report))
    say(f"wrote {files['json']} and {files['html']}")


@sim_app.command("import-philly")
def import_philly(
    trace: Annotated[Path, typer.Option(help="philly-gavel-seed0.csv")],
    matrix: Annotated[Path, typer.Option(help="throughput-matrix.csv")],
    out_path: Annotated[Path, typer.Option("--out", help="trace file to write (.jsonl)")],
    fleet_kind: Annotated[
        FleetKindChoice,
        typer.Option(help="speeds for the V100/P100/K80 fleet or the demo fleet"),
    ] = FleetKindChoice.GAVEL,
    window_start: Annotated[
        float, typer.Option(min=0, help="skip jobs submitted before this second")
    ] = 0.0,
    max_jobs: MaxJobsOpt = None,
    checkpoint_interval_s: Annotated[
        float, typer.Option(min=0, help="checkpoint interval given to every job (0: none)")
    ] = 1800.0,
) -> None:
    """Convert the Philly-derived Gavel trace into the simulator's trace format."""
    from suanwang.simulator.importers import FleetKind, import_philly_gavel
    from suanwang.simulator.trace import write_trace

    with _as_cli_errors():
        jobs = import_philly_gavel(
            trace,
            matrix,
            FleetKind(fleet_kind),
            window_start_s=window_start,
            max_jobs=max_jobs,
            checkpoint_interval_s=checkpoint_interval_s or None,
        )
        count = write_trace(jobs, out_path)
    say(f"wrote {count:,} jobs to {out_path} (speeds for the {fleet_kind} fleet)")


@sim_app.command("generate")
def generate(
    matrix: Annotated[Path, typer.Option(help="throughput-matrix.csv (job types and speeds)")],
    out_path: Annotated[Path, typer.Option("--out", help="trace file to write (.jsonl)")],
    jobs: Annotated[int, typer.Option(min=1, help="how many jobs")] = 300,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same jobs")] = 0,
    mean_gap_s: Annotated[
        float, typer.Option(min=0, help="mean seconds between arrivals (Poisson); 0: all at t=0")
    ] = 300.0,
    single_gpu: Annotated[
        bool, typer.Option("--single-gpu", help="every job on one GPU (no scale factors)")
    ] = False,
    checkpoint_interval_s: Annotated[
        float, typer.Option(min=0, help="checkpoint interval given to every job (0: none)")
    ] = 1800.0,
) -> None:
    """Generate a Gavel-style workload (job types from the matrix, Gavel's mixes)."""
    from suanwang.simulator.generator import WorkloadSpec
    from suanwang.simulator.generator import generate as generate_jobs
    from suanwang.simulator.importers import load_throughput_matrix
    from suanwang.simulator.trace import write_trace

    with _as_cli_errors():
        spec = WorkloadSpec(
            jobs=jobs,
            seed=seed,
            mean_gap_s=mean_gap_s or None,
            multi_gpu=not single_gpu,
            checkpoint_interval_s=checkpoint_interval_s or None,
        )
        count = write_trace(generate_jobs(load_throughput_matrix(matrix), spec), out_path)
    arrivals = f"mean gap {mean_gap_s:g} s" if mean_gap_s else "all at t=0"
    say(f"wrote {count:,} jobs to {out_path} (seed {seed}, {arrivals})")
