"""A job's output registered as a dataset of its tenant (``output_dataset``), on the local
backend (sandboxed jobs, real files), and what a hostile tenant's job gets: nothing of
another tenant's, nothing through a link, nothing past its quota, nothing half-made.
SQLite only (the database plays no part beyond the upload path's, tested elsewhere)."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.datasets import DatasetFormat, DatasetState
from suanwang.domain.errors import NotFound, ValidationError
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: nx}]
clusters:
  - {name: local, region: nx, kind: real, nodes: [{name: n1, chip: cpu, cards: 4}]}
"""
WRITER = """
import os, sys
out = os.path.join("/job", sys.argv[1])
os.makedirs(os.path.join(out, "sub"), exist_ok=True)
open(os.path.join(out, "part-0.jsonl"), "w").write('{"text": "cleaned"}\\n' * 100)
open(os.path.join(out, "sub", "report.json"), "w").write('{"removed": 3}')
if len(sys.argv) > 2 and sys.argv[2]:
    os.symlink(sys.argv[2], os.path.join(out, "stolen.jsonl"))
if len(sys.argv) > 3:
    open(os.path.join(out, "big.bin"), "wb").write(os.urandom(int(sys.argv[3])))
"""
SANDBOX_REFUSAL = sandbox_refusal(probe_host())
pytestmark = pytest.mark.skipif(SANDBOX_REFUSAL is not None, reason=str(SANDBOX_REFUSAL))


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/db")
    built = build_platform(settings)
    built.fleet.apply_yaml(FLEET)
    yield built
    built.uows.engine.dispose()  # type: ignore[attr-defined]


def tenant(platform: Platform, name: str) -> Principal:
    platform.tenancy.create_tenant(name, name.title(), {"cpu": 4})
    key = platform.tenancy.create_key(
        OP, tenant=name, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    return platform.tenancy.authenticate(key.secret)


def job(name: str, output: str | None, path: str | None, *args: str) -> JobSpec:
    return JobSpec(
        name=name,
        command=(sys.executable, "-c", WRITER, path or "output", *args),
        resources=Resources(chip="cpu", cards_per_node=1),
        output_dataset=output,
        output_path=path,
    )


def run_all(platform: Platform, who: dict[str, Principal], ids: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while any(not platform.jobs.get(who[k], j).job.state.terminal for k, j in ids.items()):
        assert time.monotonic() < deadline
        platform.control.tick()
        time.sleep(0.1)
    for k, j in ids.items():
        detail = platform.jobs.get(who[k], j)
        assert detail.job.state is JobState.SUCCEEDED, (k, detail.job.reason)


def events(platform: Platform, who: Principal, job_id: str) -> str:
    return "\n".join(e.reason for e in platform.jobs.get(who, job_id).events)


def test_outputs_become_datasets_and_hostile_jobs_get_nothing(platform: Platform) -> None:
    acme, beta = tenant(platform, "acme"), tenant(platform, "beta")
    made = platform.datasets.create(acme, "corpus", DatasetFormat.JSONL, "nx")
    upload = platform.datasets.begin_file(acme, made.id, "raw.jsonl")
    upload.write(b'{"text": "secret of acme"}\n')
    platform.datasets.finish_file(acme, upload)
    secret = platform.datasets.seal(acme, made.id)
    secret_file = str(Path(secret.replicas[0].path) / "raw.jsonl")
    platform.datasets.set_storage_quota(OP, "beta", 64 << 10)

    who = {"clean": acme, "link": beta, "name": beta, "quota": beta}
    ids = {
        "clean": platform.jobs.submit(acme, job("c", "corpus-clean", "cleaned"), None).job.id,
        # a link to acme's file (the host path) in beta's output: the whole output is refused
        "link": platform.jobs.submit(beta, job("l", "loot", "out", secret_file), None).job.id,
        # acme's dataset name: beta gets a dataset of its own, acme's is untouched
        "name": platform.jobs.submit(beta, job("n", "corpus", None), None).job.id,
        # past beta's 64 KiB quota: nothing is left behind
        "quota": platform.jobs.submit(beta, job("q", "huge", "q", "", str(1 << 20)), None).job.id,
    }
    run_all(platform, who, ids)

    cleaned = platform.datasets.get(acme, "corpus-clean")
    assert cleaned.state is DatasetState.READY
    assert cleaned.ready_regions() == ("nx",)
    base = Path(cleaned.replicas[0].path)
    assert {e.path: e.sha256 for e in cleaned.files} == {
        p: hashlib.sha256((base / p).read_bytes()).hexdigest()
        for p in ("part-0.jsonl", "sub/report.json")
    }
    assert (base / "part-0.jsonl").read_text() == '{"text": "cleaned"}\n' * 100
    assert "output registered as dataset corpus-clean" in events(platform, acme, ids["clean"])
    assert platform.datasets.storage(acme, "acme").used_bytes == (
        secret.size_bytes + cleaned.size_bytes
    )

    assert "symbolic link" in events(platform, beta, ids["link"])
    assert "quota" in events(platform, beta, ids["quota"])
    for name in ("loot", "huge"):
        with pytest.raises(NotFound):
            platform.datasets.get(beta, name)
    assert [d.name for d in platform.datasets.list(beta)] == ["corpus"]
    theirs = platform.datasets.get(beta, "corpus")
    assert {e.path for e in theirs.files} == {"part-0.jsonl", "sub/report.json"}
    assert platform.datasets.get(acme, "corpus") == secret  # untouched
    assert platform.datasets.storage(beta, "beta").used_bytes == theirs.size_bytes


@pytest.mark.parametrize("path", ["../escape", "/etc", "/job/../etc", "/job"])
def test_an_output_path_outside_the_job_directory_is_refused(platform: Platform, path: str) -> None:
    acme = tenant(platform, "acme")
    with pytest.raises(ValidationError) as err:
        platform.jobs.submit(acme, job("x", "out", path), None)
    assert err.value.field == "output_path"
