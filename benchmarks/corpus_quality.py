"""Corpus cleaning quality and throughput on the tuning (seed 1) and held-out (seed 2) samples.

    PYTHONPATH=src python benchmarks/corpus_quality.py [--repeat 3]

1. Threshold sweep of the near-duplicate step on the **tuning** sample only: duplicate recall
   and clean text removed per MinHash threshold (the default in suanwang.corpus.dedup is
   chosen from this table).
2. The default pipeline on both samples, graded by tests/data/corpus/grade.py (the same
   grading as tests/integration/test_corpus_grading.py): duplicate recall, PII recall per
   type, decoys kept, clean removed, low-quality and foreign removed, report consistency.
3. Throughput in the same run: docs/s and MB/s of the full pipeline against a naive baseline
   (normalisation and exact dedup only), the median of ``--repeat`` runs, model loading
   excluded (timed separately).

Results: benchmarks/results/corpus_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from suanwang.corpus import Pipeline, load
from suanwang.corpus.config import CleanConfig
from suanwang.corpus.dedup import NearDedupConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "corpus"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(DATA))
import grade  # noqa: E402

SWEEP = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]


def run(config: CleanConfig, sample: str) -> tuple[dict[str, Any], grade.Grades, float]:
    """One pipeline run: its report, grades and construction (model loading) seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        pipeline = Pipeline(config)
        setup_s = time.monotonic() - started
        report = pipeline.run([DATA / f"{sample}.jsonl"], Path(tmp))
        return report, grade.grade(DATA / f"{sample}.labels.jsonl", Path(tmp)), setup_s


def sweep(base: CleanConfig) -> list[dict[str, Any]]:
    rows = []
    for threshold in SWEEP:
        near = replace(base.near_dedup or NearDedupConfig(), threshold=threshold)
        _, grades, _ = run(replace(base, near_dedup=near), "tuning")
        rows.append(
            {
                "threshold": threshold,
                "duplicate_recall": round(grades.duplicate_recall, 4),
                "clean_removed": round(grades.clean_removed, 4),
            }
        )
        print(f"  threshold {threshold:.2f}: {rows[-1]}")
    return rows


def throughput(config: CleanConfig, sample: str, repeat: int) -> dict[str, Any]:
    runs = [run(config, sample) for _ in range(repeat)]
    seconds = statistics.median(r[0]["seconds"] for r in runs)
    report = runs[0][0]
    return {
        "docs": report["docs_read"],
        "mb": round(report["bytes_read"] / 1e6, 3),
        "seconds": round(seconds, 3),
        "docs_per_s": round(report["docs_read"] / seconds, 1),
        "mb_per_s": round(report["bytes_read"] / 1e6 / seconds, 3),
        "setup_s": round(statistics.median(r[2] for r in runs), 3),
        "duplicate_recall": round(runs[0][1].duplicate_recall, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args()
    config = load(None)
    baseline = replace(config, near_dedup=None, language=None, pii=None, quality=None)
    result: dict[str, Any] = {"settings": {"near_dedup": str(config.near_dedup)}}
    if not args.no_sweep:
        print("near-dup threshold sweep (tuning sample only):")
        result["sweep_tuning"] = sweep(config)
    result["samples"] = {}
    for sample in ("tuning", "heldout"):
        report, grades, _ = run(config, sample)
        graded = grades.as_json()
        graded["failed"] = grades.passed()
        graded["removed_by_step"] = {s["step"]: s["removed"] for s in report["steps"]}
        result["samples"][sample] = {
            "grades": graded,
            "throughput_full": throughput(config, sample, args.repeat),
            "throughput_exact_only": throughput(baseline, sample, args.repeat),
        }
        print(
            f"{sample}: failed={graded['failed']} dup={grades.duplicate_recall:.4f} "
            f"pii={grades.pii_recall} clean_removed={grades.clean_removed:.4f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "corpus_quality.md").write_text(markdown(result))
    print((RESULTS / "corpus_quality.md").read_text())


def markdown(result: dict[str, Any]) -> str:
    samples = result["samples"]
    lines = [
        "# Corpus cleaning quality (benchmarks/corpus_quality.py)",
        "",
        "| metric | goal | tuning (seed 1) | held out (seed 2) |",
        "|---|---|---:|---:|",
    ]

    def row(name: str, goal: str, pick: Any) -> None:
        values = [pick(samples[s]["grades"]) for s in ("tuning", "heldout")]
        lines.append(f"| {name} | {goal} | " + " | ".join(str(v) for v in values) + " |")

    row("duplicate recall", ">= 0.95", lambda g: f"{g['duplicate_recall']:.4f}")
    for kind in samples["tuning"]["grades"]["pii_recall"]:
        row(
            f"PII recall {kind}",
            ">= 0.98",
            lambda g, k=kind: f"{g['pii_recall'][k]:.4f} (n={g['pii_counts'][k]})",
        )
    row("decoys kept", "1.0", lambda g: f"{g['decoy_precision']:.4f} (n={g['decoys_checked']})")
    row(
        "clean text removed", "<= 0.02", lambda g: f"{g['clean_removed']:.4f} (n={g['clean_docs']})"
    )
    row("low-quality removed", "-", lambda g: f"{g['low_quality_removed']:.4f}")
    row("foreign removed", "-", lambda g: f"{g['foreign_removed']:.4f}")
    row("report counts = removals", "yes", lambda g: "yes" if g["report_consistent"] else "NO")
    lines += [
        "",
        "| throughput (median) | tuning docs/s | tuning MB/s | held out docs/s | held out MB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, name in (
        ("throughput_full", "full pipeline"),
        ("throughput_exact_only", "baseline: normalise + exact dedup"),
    ):
        t, h = samples["tuning"][key], samples["heldout"][key]
        cells = (t["docs_per_s"], t["mb_per_s"], h["docs_per_s"], h["mb_per_s"])
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    setup = samples["tuning"]["throughput_full"]["setup_s"]
    lines += ["", f"Model loading (langid) once per run: {setup} s, not in the rates above.", ""]
    if "sweep_tuning" in result:
        lines += [
            "Near-duplicate threshold sweep, tuning sample only:",
            "",
            "| MinHash threshold | duplicate recall | clean removed |",
            "|---:|---:|---:|",
        ]
        lines += [
            f"| {r['threshold']} | {r['duplicate_recall']} | {r['clean_removed']} |"
            for r in result["sweep_tuning"]
        ]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
