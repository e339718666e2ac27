"""Importers of public job traces into the simulator's trace format.

:func:`import_philly_gavel` maps the Philly-derived trace prepared by the Gavel project
(``philly-gavel-seed0.csv``) and Gavel's throughput matrix (``throughput-matrix.csv``) to
:class:`~suanwang.simulator.trace.TraceJob` rows, for one of two fleets:

- ``gavel``: a V100/P100/K80 fleet. Each job's speed on P100 and K80 is its measured
  steps/s there over its steps/s on a V100 (the reference chip). A zero in the matrix
  (the job does not fit that GPU) removes the chip from the job's accepted chips.
- ``demo``: the demo fleet's chips (Ascend 910B, H20, C500, K100). A chip's speed is its
  FP16 TFLOPS over the V100's 125, capped by the job's own generation gain (its V100 over
  P100 speed, at least 1): a job that barely sped up from P100 to V100 is not assumed to
  speed up much on a newer chip either.

The assumptions are spelled out in ``docs/trace-format.md``. Writing the file is the
caller's business (:func:`~suanwang.simulator.trace.write_trace`).
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass
from pathlib import Path

from suanwang.domain.chips import ANY_CHIP, Catalogue
from suanwang.domain.ids import ChipName, JobId, TenantId
from suanwang.services.demo import demo_fleet
from suanwang.simulator.chips import simulation_catalogue
from suanwang.simulator.errors import TraceError, unreadable
from suanwang.simulator.trace import TraceJob

GAVEL_CHIPS = {
    "v100": ChipName("nvidia-v100"),
    "p100": ChipName("nvidia-p100"),
    "k80": ChipName("nvidia-k80"),
}
PHILLY_COLUMNS = ("job_id", "tenant", "submit_s", "gpus", "duration_s", "gpu_type", "job_type")
MATRIX_COLUMNS = ("job_type", "gpus", "v100_steps_per_s", "p100_steps_per_s", "k80_steps_per_s")


class FleetKind(enum.StrEnum):
    """Which fleet the imported speeds are for."""

    GAVEL = "gavel"
    DEMO = "demo"


NODE_CARDS = {FleetKind.GAVEL: 4, FleetKind.DEMO: 8}
"""Cards per node of each fleet: a job asking for more cards spans several whole nodes."""


@dataclass(frozen=True, slots=True)
class Throughput:
    """Steps per second of one job type at one GPU count, alone on each GPU type."""

    v100: float
    p100: float
    k80: float

    def relative(self) -> dict[str, float]:
        """Speed on each GPU type relative to the V100 (zero: does not run there)."""
        return {"v100": 1.0, "p100": self.p100 / self.v100, "k80": self.k80 / self.v100}


ThroughputMatrix = dict[tuple[str, int], Throughput]


def load_throughput_matrix(path: Path) -> ThroughputMatrix:
    """Read ``throughput-matrix.csv`` keyed by (job type, GPU count)."""
    matrix: ThroughputMatrix = {}
    for line, row in _csv_rows(path, MATRIX_COLUMNS):
        gpus = int(_float(row, "gpus", path, line))
        speeds = [_float(row, f"{g}_steps_per_s", path, line) for g in GAVEL_CHIPS]
        if speeds[0] <= 0 or min(speeds) < 0:
            raise TraceError(path, line, "v100_steps_per_s", "V100 steps/s must be positive")
        matrix[(row["job_type"], gpus)] = Throughput(*speeds)
    return matrix


def import_philly_gavel(
    trace_csv: Path,
    matrix_csv: Path,
    mapping: FleetKind,
    *,
    window_start_s: float = 0.0,
    max_jobs: int | None = None,
    checkpoint_interval_s: float | None = None,
) -> list[TraceJob]:
    """Map the Philly-derived Gavel trace to trace jobs for the ``mapping`` fleet.

    Args:
        trace_csv: ``philly-gavel-seed0.csv``.
        matrix_csv: ``throughput-matrix.csv``.
        mapping: The fleet whose chips the speeds are for.
        window_start_s: Skip jobs submitted before this time; submit times of the
            rest are shifted so the window starts at 0.
        max_jobs: Keep at most this many jobs (the first ones of the window).
        checkpoint_interval_s: Checkpoint interval given to every job (Philly has none).

    Raises:
        TraceError: a row of either file is malformed or has no matrix entry.
    """
    matrix = load_throughput_matrix(matrix_csv)
    catalogue = simulation_catalogue()
    demo_chips = _demo_chips(catalogue)
    jobs: list[TraceJob] = []
    for line, row in _csv_rows(trace_csv, PHILLY_COLUMNS):
        if max_jobs is not None and len(jobs) >= max_jobs:
            break
        submit_s = _float(row, "submit_s", trace_csv, line)
        if submit_s < window_start_s:
            continue
        gpus = int(_float(row, "gpus", trace_csv, line))
        throughput = matrix.get((row["job_type"], gpus))
        if throughput is None:
            problem = f"no throughput for {row['job_type']!r} on {gpus} GPUs in {matrix_csv}"
            raise TraceError(trace_csv, line, "job_type", problem)
        chips, speed = (
            gavel_speeds(throughput)
            if mapping is FleetKind.GAVEL
            else _demo_speeds(throughput, demo_chips, catalogue)
        )
        per_node = min(gpus, NODE_CARDS[mapping])
        jobs.append(
            TraceJob(
                job_id=JobId(row["job_id"]),
                tenant=TenantId(row["tenant"]),
                submit_s=submit_s - window_start_s,
                cards=per_node,
                nodes=max(1, gpus // per_node),
                duration_s=_float(row, "duration_s", trace_csv, line),
                chips=chips,
                speed=speed,
                kind=row["job_type"],
                checkpoint_interval_s=checkpoint_interval_s,
                line=line,
            )
        )
    return jobs


def gavel_speeds(throughput: Throughput) -> tuple[tuple[str, ...], dict[ChipName, float]]:
    """Accepted chips and speeds on the V100/P100/K80 fleet (zero speed: not accepted)."""
    speed = {GAVEL_CHIPS[g]: round(v, 6) for g, v in throughput.relative().items() if v > 0}
    chips: tuple[str, ...] = (ANY_CHIP,) if len(speed) == len(GAVEL_CHIPS) else tuple(speed)
    return chips, speed


def _demo_speeds(
    throughput: Throughput, chips: tuple[ChipName, ...], catalogue: Catalogue
) -> tuple[tuple[str, ...], dict[ChipName, float]]:
    """Speeds on the demo chips: TFLOPS ratio to the V100, capped by the job's gain."""
    gain = throughput.v100 / throughput.p100 if throughput.p100 > 0 else 1.0
    cap = max(1.0, gain)
    speed: dict[ChipName, float] = {}
    for chip in chips:
        ratio = catalogue.get(chip).units  # TFLOPS over the V100's 125: one unit
        speed[chip] = round(min(ratio, cap) if ratio >= 1.0 else ratio, 6)
    return (ANY_CHIP,), speed


def _demo_chips(catalogue: Catalogue) -> tuple[ChipName, ...]:
    """The accelerator chips of the demo fleet (its cpu slots left out)."""
    names: set[ChipName] = set()
    for cluster in demo_fleet()["clusters"]:
        for group in [*cluster.get("node_groups", []), *cluster.get("nodes", [])]:
            names.add(ChipName(group["chip"]))
    return tuple(sorted(n for n in names if catalogue.get(n).fp16_tflops > 0))


def _csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with the expected columns, each with its line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, exc, None) from None
    reader = csv.DictReader(text.splitlines())
    for column in columns:
        if column not in (reader.fieldnames or []):
            raise TraceError(path, 1, column, "missing column")
    rows: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        if any(row.get(c) is None for c in columns):
            raise TraceError(path, reader.line_num, "(row)", "fewer cells than columns")
        rows.append((reader.line_num, row))
    return rows


def _float(row: dict[str, str], column: str, path: Path, line: int) -> float:
    try:
        value = float(row[column])
    except ValueError:
        raise TraceError(path, line, column, f"bad number {row[column]!r}") from None
    if value != value or value < 0:
        raise TraceError(path, line, column, f"must be a number >= 0, got {row[column]!r}")
    return value
