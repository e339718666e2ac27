"""The trace loader: valid JSONL and CSV rows, and one error naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanwang.domain.ids import ChipName, JobId, RegionName, TenantId
from suanwang.simulator.chips import simulation_catalogue
from suanwang.simulator.errors import SimulationError, TraceError
from suanwang.simulator.trace import DatasetSpec, TraceJob, load_trace, write_trace

CATALOGUE = simulation_catalogue()
GOOD = {"job_id": "j1", "tenant": "t", "submit_s": 5, "cards": 2, "duration_s": 100}


def jsonl(tmp_path: Path, *rows: dict[str, object] | str) -> Path:
    path = tmp_path / "trace.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_full_row_parses(tmp_path: Path) -> None:
    row = {
        **GOOD,
        "nodes": 2,
        "priority": 3,
        "chips": ["nvidia-v100", "ascend"],
        "speed": {"nvidia-p100": 0.5},
        "kind": "ResNet-50",
        "preemptible": False,
        "checkpoint_interval_s": 600,
        "max_runtime_s": 200,
        "dataset": {"name": "imagenet", "size_bytes": 1000, "home": "r1"},
    }
    (job,) = load_trace(jsonl(tmp_path, row), CATALOGUE)
    assert job.total_cards == 4
    assert job.chips == ("nvidia-v100", "ascend")
    assert job.speed == {"nvidia-p100": 0.5}
    assert not job.preemptible
    assert job.dataset == DatasetSpec("imagenet", 1000, RegionName("r1"))
    assert job.line == 1


def test_defaults_and_sorting_by_submit_time(tmp_path: Path) -> None:
    later = {**GOOD, "job_id": "late", "submit_s": 50}
    jobs = load_trace(jsonl(tmp_path, later, "", GOOD), CATALOGUE)
    assert [j.job_id for j in jobs] == ["j1", "late"]
    assert (jobs[0].nodes, jobs[0].priority, jobs[0].chips) == (1, 0, ("any",))
    assert jobs[0].line == 3


def test_csv_with_speed_columns_and_dataset(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "job_id,tenant,submit_s,cards,duration_s,chips,speed_nvidia-k80,dataset_name,"
        "dataset_size_bytes,dataset_home\n"
        "a,t,0,1,10,nvidia-v100|nvidia-k80,0.25,d,5,r1\n"
        "b,t,1,1,10,,,,,\n",
    )
    a, b = load_trace(path, CATALOGUE)
    assert a.chips == ("nvidia-v100", "nvidia-k80")
    assert a.speed == {"nvidia-k80": 0.25}
    assert a.dataset == DatasetSpec("d", 5, RegionName("r1"))
    assert (b.chips, b.speed, b.dataset) == (("any",), {}, None)


def test_round_trip_through_write_trace(tmp_path: Path) -> None:
    speed = {ChipName("ascend-910b"): 2.0}
    job = TraceJob(
        JobId("x"), TenantId("t"), 1.5, 8, 60.0, nodes=2, chips=("ascend",), speed=speed, line=1
    )
    path = tmp_path / "out.jsonl"
    assert write_trace([job], path) == 1
    assert load_trace(path, CATALOGUE) == (job,)


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        pytest.param(
            {k: v for k, v in GOOD.items() if k != "tenant"}, "tenant", "missing", id="missing"
        ),
        pytest.param({**GOOD, "cards": -2}, "cards", "must be >= 1", id="negative-cards"),
        pytest.param({**GOOD, "chips": "nvidia-b200"}, "chips", "unknown chip", id="unknown-chip"),
        pytest.param({**GOOD, "submit_s": "soon"}, "submit_s", "bad number", id="bad-number"),
        pytest.param({**GOOD, "duration_s": 0}, "duration_s", "must be >", id="zero-duration"),
        pytest.param({**GOOD, "cards": 1.5}, "cards", "whole number", id="fractional-cards"),
        pytest.param({**GOOD, "gpus": 1}, "gpus", "unknown field", id="unknown-field"),
        pytest.param(
            {**GOOD, "speed": {"nvidia-x": 1}}, "speed.nvidia-x", "unknown chip", id="speed-chip"
        ),
        pytest.param(
            {**GOOD, "speed": {"nvidia-k80": 0}}, "speed.nvidia-k80", "must be >", id="speed-zero"
        ),
        pytest.param({**GOOD, "preemptible": "maybe"}, "preemptible", "true or false", id="bool"),
        pytest.param(
            {**GOOD, "dataset": {"name": "d", "home": "r"}},
            "dataset.size_bytes",
            "missing",
            id="dataset",
        ),
    ],
)
def test_bad_jsonl_row_names_file_line_and_field(
    tmp_path: Path, row: dict[str, object], field: str, problem: str
) -> None:
    path = jsonl(tmp_path, GOOD | {"job_id": "ok"}, row)
    with pytest.raises(TraceError) as caught:
        load_trace(path, CATALOGUE)
    assert (caught.value.line, caught.value.field_name) == (2, field)
    assert str(caught.value).startswith(f"{path}:2: field {field!r}: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        pytest.param(
            "job_id,tenant,submit_s,cards\na,t,0,1\n", 1, "duration_s", id="missing-column"
        ),
        pytest.param(
            "job_id,tenant,submit_s,cards,duration_s,gpus\n", 1, "gpus", id="unknown-column"
        ),
        pytest.param(
            "job_id,tenant,submit_s,cards,duration_s\na,t,0,1,10\nb,t,0,-1,10\n",
            3,
            "cards",
            id="negative",
        ),
        pytest.param(
            "job_id,tenant,submit_s,cards,duration_s\na,,0,1,10\n", 2, "tenant", id="empty-cell"
        ),
        pytest.param(
            "job_id,tenant,submit_s,cards,duration_s\na,t,0,1,nan\n", 2, "duration_s", id="nan"
        ),
        pytest.param(
            "job_id,tenant,submit_s,cards,duration_s\na,t,0,1,10\na,t,0,1,10\n",
            3,
            "job_id",
            id="dup",
        ),
    ],
)
def test_bad_csv_names_line_and_field(tmp_path: Path, text: str, line: int, field: str) -> None:
    with pytest.raises(TraceError) as caught:
        load_trace(csv_file(tmp_path, text), CATALOGUE)
    assert (caught.value.line, caught.value.field_name) == (line, field)


def test_invalid_json_line(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"trace.jsonl:2: field '\(line\)': not valid JSON"):
        load_trace(jsonl(tmp_path, GOOD, "{oops"), CATALOGUE)


def test_conflicting_dataset_sizes(tmp_path: Path) -> None:
    one = {**GOOD, "dataset": {"name": "d", "size_bytes": 1, "home": "r"}}
    two = {**one, "job_id": "j2", "dataset": {"name": "d", "size_bytes": 2, "home": "r"}}
    with pytest.raises(TraceError, match="another size or home"):
        load_trace(jsonl(tmp_path, one, two), CATALOGUE)


@pytest.mark.parametrize("name", ["trace.txt", "missing.csv"])
def test_unreadable_or_unknown_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(SimulationError):
        load_trace(tmp_path / name, CATALOGUE)


def test_empty_trace(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match="no jobs"):
        load_trace(jsonl(tmp_path, ""), CATALOGUE)
