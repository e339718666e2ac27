"""Isolation of local runs at the service and API level, on SQLite and PostgreSQL: tenant
uids, the ``working_dir`` rule, refusal without privilege, and files at rest (0700/0600)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.local import LocalBackend
from suanwang.adapters.backends.sandbox import HostFacts, Isolation, IsolationMode
from suanwang.adapters.journal import JournaledUsageSink
from suanwang.bootstrap import build_app, build_platform
from suanwang.config import Settings
from suanwang.domain.errors import ValidationError
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.workloads import UidRange
from suanwang.services.identities import TenantUidAllocator
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: here}, {name: far}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 2}]}
  - {name: sim, region: far, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""
NOT_ROOT = HostFacts(1000, 0, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_each_tenant_gets_its_own_uid_for_good(platform: Platform) -> None:
    for tenant in ("aaa", "bbb", "ccc"):
        platform.tenancy.create_tenant(tenant, tenant, {})
    uids = UidRange(300000, 300001)
    first = TenantUidAllocator(platform.uows, platform.clock, uids)
    assert (first.uid_for("bbb"), first.uid_for("aaa"), first.uid_for("bbb")) == (
        300000,
        300001,
        300000,
    )
    again = TenantUidAllocator(platform.uows, platform.clock, uids)  # another control plane
    assert (again.uid_for("aaa"), again.uid_for("bbb")) == (300001, 300000)
    with pytest.raises(ValidationError, match="no uid left") as raised:
        again.uid_for("ccc")
    assert "SUANWANG_TENANT_UID_RANGE" in raised.value.message


def test_concurrent_control_planes_never_share_a_uid(platform: Platform) -> None:
    tenants = [f"tenant-{n}" for n in range(8)]
    for tenant in tenants:
        platform.tenancy.create_tenant(tenant, tenant, {})
    uids = UidRange(310000, 319999)
    planes = [TenantUidAllocator(platform.uows, platform.clock, uids) for _ in range(2)]
    got: dict[tuple[int, str], int] = {}
    errors: list[BaseException] = []

    def allocate(plane: int) -> None:
        try:
            for tenant in tenants:
                got[(plane, tenant)] = planes[plane].uid_for(tenant)
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=allocate, args=(n % 2,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    by_tenant = {t: {got[(p, t)] for p in (0, 1)} for t in tenants}
    assert all(len(v) == 1 for v in by_tenant.values()), by_tenant
    assert len({v.pop() for v in by_tenant.values()}) == len(tenants)


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[TestClient, Platform, str]]:
    app = build_app(settings, control=False)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("aaa", "aaa", {})
    key = platform.tenancy.create_key(
        OP, tenant="aaa", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    ).secret
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, platform, key
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "working_dir", ["/etc", "/tmp/x", "../other-job", "/job/../etc", "a/../../b"]
)
def test_a_working_dir_outside_the_jobs_area_is_422(
    api: tuple[TestClient, Platform, str], working_dir: str
) -> None:
    client, _, _ = api
    body = {"command": ["true"], "resources": {"chip": "cpu"}, "working_dir": working_dir}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "working_dir"
    assert "/job" in response.json()["hint"]


@pytest.mark.parametrize("working_dir", ["out", "/job", "/job/a/b", "./x/"])
def test_a_working_dir_inside_the_jobs_area_is_accepted(
    api: tuple[TestClient, Platform, str], working_dir: str
) -> None:
    client, _, _ = api
    body = {"command": ["true"], "resources": {"chip": "cpu"}, "working_dir": working_dir}
    assert client.post("/api/v1/jobs", json=body).status_code == 201


def test_a_tenant_cannot_claim_to_be_a_platform_engine(
    api: tuple[TestClient, Platform, str],
) -> None:
    client, _, _ = api
    body = {"command": ["true"], "resources": {"chip": "cpu"}, "workload": "platform-engine"}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "workload"


def test_without_privilege_the_local_cluster_refuses_tenant_jobs_at_submission(
    api: tuple[TestClient, Platform, str], settings: Settings
) -> None:
    client, platform, _ = api
    isolation = Isolation(
        IsolationMode.SANDBOX, TenantUidAllocator(platform.uows, platform.clock, UidRange(1, 9))
    )
    refusing = LocalBackend(settings.runs_dir, SystemClock(), isolation=isolation, host=NOT_ROOT)
    platform.backends["local"] = refusing  # the same mapping the job service reads
    response = client.post("/api/v1/jobs", json={"command": ["true"], "resources": {"chip": "cpu"}})
    assert response.status_code == 422, response.text
    problem: dict[str, Any] = response.json()
    assert problem["field"] == "resources.cluster"
    assert "'local'" in problem["detail"]
    assert "SUANWANG_LOCAL_ISOLATION=single-user-dev" in problem["detail"]
    simulated = {"resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 5}}
    assert client.post("/api/v1/jobs", json=simulated).status_code == 201


def test_state_files_are_created_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    platform = build_platform(Settings(data_dir=data))
    platform.tenancy.create_tenant("aaa", "aaa", {})  # writes: -wal and -shm exist now
    try:
        assert mode(data) == 0o700
        for name in ("suanwang.db", "suanwang.db-wal", "suanwang.db-shm"):
            assert mode(data / name) == 0o600, name
        JournaledUsageSink(ledger=None, directory=data / "usage-journal")  # type: ignore[arg-type]
        assert mode(data / "usage-journal") == 0o700
    finally:
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def test_state_left_readable_by_an_older_version_is_tightened(settings: Settings) -> None:
    data = settings.data_dir
    attempt = data / "runs" / "job-1" / "1"
    attempt.mkdir(parents=True, mode=0o755)
    journal = data / "usage-journal"
    journal.mkdir(mode=0o755)
    files = [
        data / "operator.key",
        journal / "seg-1.jsonl",
        attempt / "output.log",
        attempt / "exit.json",
    ]
    old_umask = os.umask(0o022)
    try:
        for path in files:
            path.write_text("x")
            path.chmod(0o644)
        data.chmod(0o755)
        build_platform(settings).uows.engine.dispose()  # type: ignore[attr-defined]
    finally:
        os.umask(old_umask)
    assert [mode(p) for p in files] == [0o600] * len(files)
    for directory in (data, journal, data / "runs", attempt.parent, attempt):
        assert mode(directory) == 0o700, directory
    if settings.db_url.startswith("sqlite"):
        assert mode(Path(settings.db_url.removeprefix("sqlite:///"))) == 0o600


@pytest.mark.parametrize("isolation", ["single-user-dev", "sandbox"])
def test_the_server_names_the_development_mode_on_every_start(
    isolation: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    from suanwang.cli import server as server_cmds

    monkeypatch.setenv("SUANWANG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SUANWANG_LOCAL_ISOLATION", isolation)
    monkeypatch.setattr(uvicorn, "run", lambda *_args, **_kwargs: None)
    umask = os.umask(0o022)
    try:
        for _ in range(2):
            server_cmds.server(host=None, port=None, with_gateway=False)
    finally:
        os.umask(umask)
    shown = capsys.readouterr()
    printed = shown.err.count("WARNING: SUANWANG_LOCAL_ISOLATION=single-user-dev")
    logged = (shown.out + shown.err).count("local jobs run UNCONFINED")
    assert (printed, logged) == ((2, 2) if isolation == "single-user-dev" else (0, 0))
