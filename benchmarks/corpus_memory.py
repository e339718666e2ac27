"""Peak memory of the corpus cleaner against input size: only the dedup indexes should grow.

    PYTHONPATH=src python benchmarks/corpus_memory.py [--sizes 1600 6400 25600]

Inputs are made by tests/data/corpus/make_corpus.py with its counts scaled (same mix of
clean, duplicate, PII, low-quality and foreign documents). Each size runs in a fresh process
(``python -m suanwang.corpus clean``) twice: the full pipeline, and the baseline with the
near-duplicate step off (its MinHash LSH index is the big one). Peak RSS (``ru_maxrss``) and
the slope in bytes per input document are recorded: a streaming pipeline's peak grows by the
index entries, not by the input's size. Results: benchmarks/results/corpus_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "corpus"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(DATA))
import make_corpus  # noqa: E402

BASE_DOCS = sum(make_corpus.COUNTS.values())
MEASURE = """
import json, resource, sys
from suanwang.corpus.command import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_input(docs: int, path: Path) -> int:
    scale = max(1, round(docs / BASE_DOCS))
    base = dict(make_corpus.COUNTS)
    make_corpus.COUNTS.update({k: v * scale for k, v in base.items()})
    try:
        generated = make_corpus.generate(seed=100 + scale)
    finally:
        make_corpus.COUNTS.update(base)
    with path.open("w", encoding="utf-8") as out:
        for doc in generated:
            out.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    return len(generated)


def measure(source: Path, out: Path, config: Path | None) -> dict[str, Any]:
    argv = [sys.executable, "-c", MEASURE, "clean", "--input", str(source), "--output", str(out)]
    if config is not None:
        argv += ["--config", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {"peak_mib": round(result["maxrss_kib"] / 1024, 1), "seconds": report["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1600, 6400, 25600])
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        no_near = Path(tmp) / "no-near.json"
        no_near.write_text('{"near_dedup": {"enabled": false}}')
        for size in args.sizes:
            source = Path(tmp) / f"in-{size}.jsonl"
            docs = make_input(size, source)
            full = measure(source, Path(tmp) / f"full-{size}", None)
            base = measure(source, Path(tmp) / f"base-{size}", no_near)
            rows.append(
                {
                    "docs": docs,
                    "input_mb": round(source.stat().st_size / 1e6, 2),
                    "full": full,
                    "without_near_dedup": base,
                }
            )
            print(rows[-1], flush=True)
    first, last = rows[0], rows[-1]
    span = last["docs"] - first["docs"]
    slope = {
        key: round((last[key]["peak_mib"] - first[key]["peak_mib"]) * 1024 * 1024 / span)
        for key in ("full", "without_near_dedup")
    } if span else {}  # fmt: skip
    result = {"rows": rows, "bytes_per_doc": slope}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "corpus_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Corpus cleaner peak memory (benchmarks/corpus_memory.py)",
        "",
        "| documents | input MB | full: peak MiB | full: s | without near dedup: peak MiB | s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f, b = r["full"], r["without_near_dedup"]
        cells = (r["docs"], r["input_mb"], f["peak_mib"], f["seconds"], b["peak_mib"], b["seconds"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", f"Growth of the peak per input document: {slope} bytes.", ""]
    (RESULTS / "corpus_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
