"""The corpus cleaner against the real local engine, and as a real sandboxed job.

Both share the session's live stack (``live_engines``: SmolLM2 on llama-server behind the
gateway). First the LLM step in-process: every surviving document is scored by SmolLM2
through the gateway with a tenant's key, with bounded concurrency, and each call is a row
in that tenant's usage ledger. Then the whole program as a tenant job on the local cluster:
``python -m suanwang.corpus clean`` submitted through the platform with ``network: gateway``
and the tenant's key in its env, on a dataset the tenant uploaded (the JSONL input and the
run's config, read-only at ``/data/input``); the test reads the cleaned output and report
from the job's directory on the host and checks the counts and the metering.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from live_engines import CHAT, LiveEngines, missing_packages

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.corpus.command import main
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.jobs import JobNetwork, JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal
from suanwang.services.platform import Platform

pytestmark = [
    pytest.mark.skipif(bool(missing_packages()), reason=f"not installed: {missing_packages()}"),
    pytest.mark.skipif(
        sandbox_refusal(probe_host()) is not None, reason=str(sandbox_refusal(probe_host()))
    ),
]

DOCS = [
    {
        "id": "zh1",
        "text": "昨天下午，杭州图书馆举办了一场围棋比赛，吸引了一千多名棋迷参加。王先生每天坚持练习围棋，已经坚持了好几年，他说下棋让人平静。",
    },
    {
        "id": "en1",
        "text": "Earlier this month, the transit authority in Denver opened the new light rail line. According to Maria Lopez, ridership has steadily increased since it began.",
    },
    {
        "id": "en2",
        "text": "Researchers at the state university completed a study on rooftop gardens. The results suggest energy use could fall by nearly 40 percent with simple changes.",
    },
    {
        "id": "dup",
        "text": "Earlier this month, the transit authority in Denver opened the new light rail line. According to Maria Lopez, ridership has steadily increased since it began.",
    },
    {
        "id": "pii",
        "text": "如有疑问请拨打13812345678联系客服。上个月，成都市统计局启动了五十余家智慧停车场项目，停车场的使用人数稳步增长，群众满意度也随之提高。",
    },
    {"id": "short", "text": "ok thanks"},
]
SCORED = 4  # zh1, en1, en2, pii survive the steps before the LLM
# One engine serves the whole session on a shared 2-core machine: a 12-token answer can take
# 10-20 s there, so the calls get a long timeout and two at a time.
CONFIG = {"llm_score": {"timeout_s": 300, "max_concurrency": 2}}


def check_report(report: dict[str, object], cleaned: list[dict[str, object]]) -> dict[str, object]:
    steps = {s["step"]: s for s in report["steps"]}  # type: ignore[attr-defined, index]
    score = steps["llm_score"]
    assert score["in"] == SCORED
    assert score["kept"] + score["removed"] == SCORED
    scores = {k: v for k, v in score["changes"].items() if k.startswith("score_")}
    failed = score["changes"].get("score_failed", 0)
    assert failed == 0, score["flagged"]  # the engine answered every call with a score
    assert sum(scores.values()) + score["removed_by_reason"].get("low_llm_score", 0) == SCORED
    assert report["docs_written"] == len(cleaned) == score["kept"]
    assert all("13812345678" not in str(r["text"]) for r in cleaned)
    return score


def test_llm_scoring_through_the_gateway_is_metered(
    live_engines: LiveEngines, tmp_path: Path
) -> None:
    key = live_engines.tenant("corpus-score")
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8"
    )
    out, config = tmp_path / "out", tmp_path / "clean.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    env = {"OPENAI_BASE_URL": live_engines.gateway_url, "OPENAI_API_KEY": key}
    argv = ["clean", "--input", str(source), "--output", str(out), "--config", str(config)]
    assert main([*argv, "--score-with-model", CHAT], env=env) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cleaned = [
        json.loads(line)
        for line in (out / "cleaned.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    check_report(report, cleaned)
    rows = live_engines.ledger("corpus-score", count=SCORED)
    assert len(rows) == SCORED  # one metered request per score, billed to the key's tenant


def upload(platform: Platform, who: Principal, name: str, files: dict[str, bytes]) -> None:
    """A sealed JSONL dataset of ``files`` (through the datasets service)."""
    dataset = platform.datasets.create(who, name, DatasetFormat.JSONL, None)
    for path, data in files.items():
        sink = platform.datasets.begin_file(who, dataset.id, path)
        sink.write(data)
        platform.datasets.finish_file(who, sink)
    platform.datasets.seal(who, dataset.id)


def test_cleaning_runs_as_a_sandboxed_job_on_a_dataset(live_engines: LiveEngines) -> None:
    platform = live_engines.platform
    key = live_engines.tenant("corpus-job")
    who = platform.tenancy.authenticate(key)
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS)
    config = json.dumps(CONFIG).encode()
    upload(platform, who, "raw-corpus", {"raw/in.jsonl": lines.encode(), "clean.json": config})
    spec = JobSpec(
        name="clean-corpus",
        command=(
            *("python", "-m", "suanwang.corpus", "clean", "--input", "/data/input/raw/in.jsonl"),
            *("--output", "/job/out", "--config", "/data/input/clean.json"),
            *("--score-with-model", CHAT),
        ),
        resources=Resources(chip="cpu", cluster="local"),
        env=(("OPENAI_API_KEY", key),),  # PYTHONPATH: the platform's code, by default
        network=JobNetwork.GATEWAY,
        max_runtime_s=600,
        dataset="raw-corpus",
    )
    job = platform.jobs.submit(who, spec, None).job
    deadline = time.monotonic() + 600
    while not (detail := platform.jobs.get(who, job.id)).job.state.terminal:
        assert time.monotonic() < deadline, detail.job.reason
        time.sleep(0.5)
    log, _ = platform.jobs.logs(who, job.id, 0, 1 << 20, 1)
    assert detail.job.state is JobState.SUCCEEDED, log.decode(errors="replace")
    assert b"read 6, wrote" in log
    work = live_engines.stack.settings.data_dir.resolve() / "runs" / job.id / "work" / "out"
    assert sorted(p.name for p in work.iterdir()) == [
        "cleaned.jsonl",
        "removed.jsonl",
        "report.json",
        "report.md",
    ]
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    cleaned = [
        json.loads(line)
        for line in (work / "cleaned.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    check_report(report, cleaned)
    assert report["docs_read"] == len(DOCS)
    removed = {
        json.loads(line)["id"]: json.loads(line)["reason"]
        for line in (work / "removed.jsonl").read_text().splitlines()
    }
    assert removed["dup"] == "exact_duplicate"
    assert removed["short"] == "too_short" or removed["short"].startswith("language_")
    assert len(live_engines.ledger("corpus-job", count=SCORED)) == SCORED
