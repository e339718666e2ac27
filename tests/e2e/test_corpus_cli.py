"""``suanwang corpus clean`` against a real server: a dataset uploaded with ``suanwang data``
is cleaned by a sandboxed job on the local cluster, and bad invocations fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import assert_error, ok

from conftest import Cli

SAMPLE = Path(__file__).parents[1] / "data" / "corpus" / "tuning.jsonl"


def test_clean_a_dataset_as_a_job(cli: Cli, tmp_path: Path) -> None:
    ok(cli("tenants", "create", "cleaners", "--quota", "cpu=2"))
    key = ok(cli("keys", "create", "--tenant", "cleaners", "--scope", "tenant-admin", "-q")).strip()
    shards = tmp_path / "shards"
    shards.mkdir()
    lines = SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    (shards / "a.jsonl").write_text("".join(lines[:40]), encoding="utf-8")
    (shards / "b.jsonl").write_text("".join(lines[40:80]), encoding="utf-8")
    (shards / "notes.txt").write_text("not cleaned", encoding="utf-8")
    ok(cli("data", "upload", "raw", str(shards), "--format", "jsonl", "--region", "local", key=key))

    job = ok(cli("corpus", "clean", "raw", "--wait", "-q", key=key)).strip()
    log = ok(cli("jobs", "logs", job, key=key))
    assert "read 80, wrote" in log
    out = cli.server.data_dir / "runs" / job / "work" / "cleaned"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["inputs"] == ["/data/input/a.jsonl", "/data/input/b.jsonl"]
    assert report["docs_read"] == 80
    assert report["docs_written"] + report["docs_removed"] == 80
    written = (out / "cleaned.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(written) == report["docs_written"]


def test_bad_corpus_invocations(cli: Cli) -> None:
    ok(cli("tenants", "create", "cleaners2"))
    key = ok(
        cli("keys", "create", "--tenant", "cleaners2", "--scope", "tenant-admin", "-q")
    ).strip()
    assert_error(cli("corpus", "clean", "missing", key=key), "missing")
    assert_error(cli("corpus", "clean", "raw", "--input", "../x.jsonl", key=key), "--input")
    assert_error(
        cli("corpus", "clean", "raw", "--input", "a.jsonl", "--score-with-model", "m", key=key),
        "--api-key",
    )
