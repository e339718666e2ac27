"""The trace format: one job per JSONL line or CSV row, validated all at once.

:func:`load_trace` reads a whole file, checks every row and returns the jobs sorted by
submit time, or raises one :class:`~suanwang.simulator.errors.TraceError` naming the file,
the line and the field; nothing partial is returned. :func:`write_trace` writes JSONL.
The format is documented in ``docs/trace-format.md``. Reading fleets and running jobs
happen elsewhere.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanwang.domain.chips import ANY_CHIP, MAX_ACCEPTED_CHIPS, Catalogue, accepted_selectors
from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipName, JobId, RegionName, TenantId
from suanwang.simulator.errors import SimulationError, TraceError, unreadable

REQUIRED = ("job_id", "tenant", "submit_s", "cards", "duration_s")
OPTIONAL = (
    "nodes",
    "priority",
    "chips",
    "speed",
    "kind",
    "preemptible",
    "checkpoint_interval_s",
    "max_runtime_s",
    "dataset",
)
CSV_DATASET = ("dataset_name", "dataset_size_bytes", "dataset_home")
CSV_SPEED_PREFIX = "speed_"
CSV_LIST_SEP = "|"


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A job's input data: its name, size and the region holding the original copy."""

    name: str
    size_bytes: int
    home: RegionName


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace.

    ``cards`` is per node (a job holds ``cards * nodes`` cards); ``duration_s`` is the run
    time on the reference chip (speed 1.0); ``chips`` lists accepted chip names or
    families, or is ``("any",)``; ``speed`` gives the job's relative throughput per chip
    where known; ``line`` is where the job was read from (0 when built in code).
    """

    job_id: JobId
    tenant: TenantId
    submit_s: float
    cards: int
    duration_s: float
    nodes: int = 1
    priority: int = 0
    chips: tuple[str, ...] = (ANY_CHIP,)
    speed: Mapping[ChipName, float] = field(default_factory=dict)
    kind: str = ""
    preemptible: bool = True
    checkpoint_interval_s: float | None = None
    max_runtime_s: float | None = None
    dataset: DatasetSpec | None = None
    line: int = 0
    preemption_grace_s: float = 0.0
    """Seconds between the preemption signal and the kill (a live job's
    ``preemption_grace_s``): time to write a checkpoint (see :mod:`.engine`)."""
    checkpoint_save_s: float = 0.0
    """Seconds a checkpoint takes to write; saved within the grace, the job loses nothing."""
    serving: bool = False
    """A production inference replica (:mod:`~suanwang.simulator.pool` makes them; not a
    trace column): it may preempt lower-priority training and is never a victim."""

    @property
    def total_cards(self) -> int:
        """Cards the job holds while it runs."""
        return self.cards * self.nodes


@dataclass(frozen=True, slots=True)
class _Row:
    """Where a row came from, for error messages."""

    path: Path
    line: int

    def error(self, field_name: str, problem: str) -> TraceError:
        return TraceError(self.path, self.line, field_name, problem)


def load_trace(path: Path, catalogue: Catalogue) -> tuple[TraceJob, ...]:
    """Read and validate a trace (``.jsonl`` or ``.csv``); jobs sorted by submit time.

    Raises:
        TraceError: a row is malformed (the first problem found, with file, line, field).
        SimulationError: the file cannot be read, has an unknown suffix or no jobs.
    """
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise SimulationError(
            f"{path}: unknown trace format {suffix or '(no suffix)'!r}",
            field="--trace",
            hint="a trace is a .jsonl or .csv file",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, exc, "--trace") from None
    rows = _jsonl_rows(path, text) if suffix == ".jsonl" else _csv_rows(path, text)
    jobs = _check_unique([parse_job(fields, row, catalogue) for row, fields in rows], path)
    if not jobs:
        raise SimulationError(f"trace {path} has no jobs", field="--trace")
    return tuple(sorted(jobs, key=lambda j: j.submit_s))


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[_Row, Mapping[str, Any]]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        row = _Row(path, number)
        try:
            fields = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise row.error("(line)", f"not valid JSON: {exc.msg}") from None
        if not isinstance(fields, dict):
            raise row.error("(line)", "a JSONL trace line is one JSON object")
        yield row, fields


def _csv_rows(path: Path, text: str) -> Iterator[tuple[_Row, Mapping[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    header_row = _Row(path, 1)
    for name in header:
        known = name in REQUIRED or name in OPTIONAL or name in CSV_DATASET
        if not known and not name.startswith(CSV_SPEED_PREFIX):
            raise header_row.error(name, "unknown column")
    for name in REQUIRED:
        if name not in header:
            raise header_row.error(name, "missing column")
    for values in reader:
        row = _Row(path, reader.line_num)
        if None in values:
            raise row.error("(row)", f"more cells than the {len(header)} columns of the header")
        yield row, _csv_fields(values, row)


def _csv_fields(values: Mapping[str, str], row: _Row) -> dict[str, Any]:
    """A CSV row as the same fields a JSONL line has (empty cells are absent)."""
    fields: dict[str, Any] = {}
    speed: dict[str, str] = {}
    dataset: dict[str, str] = {}
    for name, raw in values.items():
        if raw is None:
            raise row.error(name, "missing cell")
        value = raw.strip()
        if not value:
            continue
        if name.startswith(CSV_SPEED_PREFIX):
            speed[name.removeprefix(CSV_SPEED_PREFIX)] = value
        elif name in CSV_DATASET:
            dataset[name.removeprefix("dataset_")] = value
        elif name == "chips":
            fields[name] = value.split(CSV_LIST_SEP)
        else:
            fields[name] = value
    if speed:
        fields["speed"] = speed
    if dataset:
        fields["dataset"] = dataset
    return fields


def parse_job(fields: Mapping[str, Any], row: _Row, catalogue: Catalogue) -> TraceJob:
    """Validate one row's fields (JSON values or CSV strings) into a :class:`TraceJob`."""
    for name in fields:
        if name not in REQUIRED and name not in OPTIONAL:
            raise row.error(name, "unknown field")
    for name in REQUIRED:
        if fields.get(name) in (None, ""):
            raise row.error(name, "missing field")
    return TraceJob(
        job_id=JobId(_text(fields, "job_id", row)),
        tenant=TenantId(_text(fields, "tenant", row)),
        submit_s=_number(fields, "submit_s", row, minimum=0.0),
        cards=_integer(fields, "cards", row, minimum=1),
        duration_s=_number(fields, "duration_s", row, minimum=0.0, strict=True),
        nodes=_integer(fields, "nodes", row, minimum=1, default=1),
        priority=_integer(fields, "priority", row, default=0),
        chips=_chips(fields.get("chips", ANY_CHIP), row, catalogue),
        speed=_speed(fields.get("speed", {}), row, catalogue),
        kind=_text(fields, "kind", row, default=""),
        preemptible=_boolean(fields, "preemptible", row, default=True),
        checkpoint_interval_s=_optional_positive(fields, "checkpoint_interval_s", row),
        max_runtime_s=_optional_positive(fields, "max_runtime_s", row),
        dataset=_dataset(fields.get("dataset"), row),
        line=row.line,
    )


def _text(fields: Mapping[str, Any], name: str, row: _Row, default: str | None = None) -> str:
    value = fields.get(name)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise row.error(name, f"expected a string, got {value!r}")
    text = str(value).strip()
    if not text:
        raise row.error(name, "must not be empty")
    return text


def _number(
    fields: Mapping[str, Any],
    name: str,
    row: _Row,
    *,
    minimum: float | None = None,
    strict: bool = False,
) -> float:
    """A finite number; ``strict`` makes ``minimum`` exclusive."""
    value = fields.get(name)
    if isinstance(value, bool):
        raise row.error(name, f"bad number {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise row.error(name, f"bad number {value!r}") from None
    if not math.isfinite(number):
        raise row.error(name, f"bad number {value!r} (must be finite)")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        relation = ">" if strict else ">="
        raise row.error(name, f"must be {relation} {minimum:g}, got {value!r}")
    return number


def _integer(
    fields: Mapping[str, Any],
    name: str,
    row: _Row,
    *,
    minimum: int | None = None,
    default: int | None = None,
) -> int:
    value = fields.get(name)
    if value is None and default is not None:
        return default
    number = _number(fields, name, row)
    if not number.is_integer():
        raise row.error(name, f"expected a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise row.error(name, f"must be >= {minimum}, got {value!r}")
    return int(number)


def _optional_positive(fields: Mapping[str, Any], name: str, row: _Row) -> float | None:
    if fields.get(name) is None:
        return None
    return _number(fields, name, row, minimum=0.0, strict=True)


def _boolean(fields: Mapping[str, Any], name: str, row: _Row, *, default: bool) -> bool:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise row.error(name, f"expected true or false, got {value!r}")


def _chips(value: Any, row: _Row, catalogue: Catalogue) -> tuple[str, ...]:
    selectors = [value] if isinstance(value, str) else value
    if not isinstance(selectors, list) or not selectors:
        raise row.error("chips", "expected a chip, a family, 'any', or a list of them")
    if len(selectors) > MAX_ACCEPTED_CHIPS:
        raise row.error(
            "chips", f"at most {MAX_ACCEPTED_CHIPS} accepted chips, got {len(selectors)}"
        )
    out: list[str] = []
    for selector in selectors:
        if not isinstance(selector, str):
            raise row.error("chips", f"expected a chip name, got {selector!r}")
        try:
            out.append(catalogue.check_selector(selector.strip(), field_name="chips"))
        except ValidationError:
            raise row.error("chips", f"unknown chip or chip family {selector!r}") from None
    return accepted_selectors(out)


def _speed(value: Any, row: _Row, catalogue: Catalogue) -> dict[ChipName, float]:
    if not isinstance(value, dict):
        raise row.error("speed", "expected an object of chip name to relative throughput")
    speeds: dict[ChipName, float] = {}
    for chip, raw in value.items():
        name = f"speed_{chip}" if isinstance(raw, str) else f"speed.{chip}"
        if chip not in catalogue.chips:
            raise row.error(name, f"unknown chip {chip!r}")
        speeds[ChipName(chip)] = _number({name: raw}, name, row, minimum=0.0, strict=True)
    return speeds


def _dataset(value: Any, row: _Row) -> DatasetSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise row.error("dataset", "expected an object with name, size_bytes and home")
    for key in value:
        if key not in ("name", "size_bytes", "home"):
            raise row.error(f"dataset.{key}", "unknown field")
    for key in ("name", "size_bytes", "home"):
        if value.get(key) in (None, ""):
            raise row.error(f"dataset.{key}", "missing field")
    return DatasetSpec(
        name=_text(value, "name", row),
        size_bytes=_integer(value, "size_bytes", row, minimum=0),
        home=RegionName(_text(value, "home", row)),
    )


def _check_unique(jobs: list[TraceJob], path: Path) -> list[TraceJob]:
    """Job ids are unique; a dataset name means the same size and home everywhere."""
    seen: set[JobId] = set()
    datasets: dict[str, DatasetSpec] = {}
    for job in jobs:
        if job.job_id in seen:
            raise TraceError(path, job.line, "job_id", f"duplicate job id {job.job_id!r}")
        seen.add(job.job_id)
        if job.dataset is not None:
            first = datasets.setdefault(job.dataset.name, job.dataset)
            if first != job.dataset:
                problem = f"dataset {job.dataset.name!r} has another size or home earlier"
                raise TraceError(path, job.line, "dataset", problem)
    return jobs


def job_fields(job: TraceJob) -> dict[str, Any]:
    """One job as a JSONL object (defaults left out)."""
    fields: dict[str, Any] = {
        "job_id": job.job_id,
        "tenant": job.tenant,
        "submit_s": job.submit_s,
        "cards": job.cards,
        "duration_s": job.duration_s,
    }
    optional: dict[str, Any] = {
        "nodes": job.nodes if job.nodes != 1 else None,
        "priority": job.priority or None,
        "chips": list(job.chips) if job.chips != (ANY_CHIP,) else None,
        "speed": dict(job.speed) or None,
        "kind": job.kind or None,
        "preemptible": None if job.preemptible else False,
        "checkpoint_interval_s": job.checkpoint_interval_s,
        "max_runtime_s": job.max_runtime_s,
        "dataset": None
        if job.dataset is None
        else {
            "name": job.dataset.name,
            "size_bytes": job.dataset.size_bytes,
            "home": job.dataset.home,
        },
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def write_trace(jobs: Iterable[TraceJob], path: Path) -> int:
    """Write ``jobs`` as JSONL to ``path`` (all or nothing); return how many were written."""
    lines = [json.dumps(job_fields(job), ensure_ascii=False) for job in jobs]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return len(lines)
