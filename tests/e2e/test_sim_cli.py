"""``suanwang sim`` as a user runs it: a subprocess, no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from traces import require_traces

CLI = [sys.executable, "-m", "suanwang.cli.main", "sim"]
JOBS = [
    {
        "job_id": f"j{i}",
        "tenant": f"t{i % 3}",
        "submit_s": 60 * i,
        "cards": 1 + i % 4,
        "duration_s": 600 + 100 * i,
        "checkpoint_interval_s": 300,
    }
    for i in range(20)
]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def write_trace(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sim_run_writes_json_and_html(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.jsonl", JOBS)
    result = run(
        "run",
        "--fleet",
        "gavel-hetero",
        "--trace",
        str(trace),
        "--policy",
        "fifo",
        "--policy",
        "default",
        "--out",
        "results",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "avg JCT" in result.stdout
    data = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    assert set(data["results"]) == {"fifo", "default"}
    assert data["results"]["fifo"]["completed"] == len(JOBS)
    html = (tmp_path / "results" / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 3  # JCT CDF + utilisation per policy


def test_sim_what_if_reports_the_difference(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.jsonl", JOBS)
    result = run(
        "what-if",
        "--fleet",
        "gavel-hetero",
        "--trace",
        str(trace),
        "--policy",
        "fifo",
        "--add-cards",
        "36:nvidia-v100:gavel",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["results"]) == {"fifo: before", "fifo: after"}
    assert data["differences"]["fifo"]["avg_jct"] <= 0
    assert (tmp_path / "sim-results" / "what-if" / "report.html").exists()


def test_bad_trace_is_one_line_and_no_output(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.jsonl", [JOBS[0], {**JOBS[1], "cards": -2}])
    result = run("run", "--fleet", "gavel-hetero", "--trace", str(trace), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert f"{trace}:2: field 'cards'" in lines[0]
    assert not (tmp_path / "sim-results").exists()


def test_import_philly_window(tmp_path: Path) -> None:
    traces = require_traces()
    out = tmp_path / "philly.jsonl"
    result = run(
        "import-philly",
        "--trace",
        str(traces / "philly-gavel-seed0.csv"),
        "--matrix",
        str(traces / "throughput-matrix.csv"),
        "--fleet-kind",
        "demo",
        "--max-jobs",
        "50",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 50


def test_compare_gavel_is_in_help_and_sets_the_gavel_settings(tmp_path: Path) -> None:
    help_text = run("run", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "--compare-gavel" in help_text.stdout
    trace = write_trace(tmp_path / "trace.jsonl", JOBS)
    args = ["run", "--fleet", "gavel-hetero", "--trace", str(trace), "--policy", "fifo"]
    text = run(*args, "--compare-gavel", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "mode: gavel-matched" in text.stdout
    assert "cost_model: free" in text.stdout
    assert "decision_interval_s: 360" in text.stdout
    data = json.loads(run(*args, "--compare-gavel", "--json", cwd=tmp_path).stdout)
    assert data["settings"] == {
        "mode": "gavel-matched",
        "cost_model": "free",
        "restart_delay_s": 0.0,
        "decision_interval_s": 360.0,
        "reference_chip": "nvidia-v100",
    }
    plain = json.loads(run(*args, "--json", cwd=tmp_path).stdout)
    assert plain["settings"]["mode"] == "custom"
    assert plain["settings"]["decision_interval_s"] == 60.0


def test_compare_gavel_refuses_options_it_sets(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.jsonl", JOBS)
    result = run(
        "run",
        "--fleet",
        "gavel-hetero",
        "--trace",
        str(trace),
        "--compare-gavel",
        "--cost",
        "realistic",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "error: --compare-gavel sets --cost itself" in result.stderr
    assert not (tmp_path / "sim-results").exists()


def test_generate_writes_the_same_trace_for_the_same_seed(tmp_path: Path) -> None:
    matrix = str(require_traces() / "throughput-matrix.csv")
    outputs = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        out = tmp_path / f"{name}.jsonl"
        args = ["--matrix", matrix, "--jobs", "40", "--seed", seed, "--out", str(out)]
        result = run("generate", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] != outputs[2]
    assert len(outputs[0].splitlines()) == 40
    batch = tmp_path / "batch.jsonl"
    result = run(
        "generate", "--matrix", matrix, "--jobs", "10", "--mean-gap-s", "0", "--out", str(batch),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines()]
    assert {r["submit_s"] for r in rows} == {0.0}
    simulated = run(
        "run", "--fleet", "gavel-hetero", "--trace", str(batch), "--policy", "fifo",
        "--compare-gavel", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["results"]["fifo"]["completed"] == 10
