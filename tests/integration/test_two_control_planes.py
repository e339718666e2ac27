"""Two control planes on one database at once (suite R1, split brain).

Two real server processes share the database and the run directory, both ticking. Jobs are
submitted to both. Each local job (sandboxed) prints ``start``/``end`` lines into its log, so
a job run twice, or more runs at once than the node has cards, would be visible. Afterwards every
job succeeded exactly once, with one attempt, and no capacity is left allocated.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from procs import LAUNCH_MARK, Server, free_port, launch_marks, overlapping_runs
from sqlalchemy import func, select

from suanwang.adapters.db.tables import AllocationRow, AttemptRow
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

CARDS = 3
JOBS = 24
FLEET = f"""
regions: [{{name: here}}]
clusters:
  - {{name: local, region: here, kind: real, nodes: [{{name: n1, chip: cpu, cards: {CARDS}}}]}}
"""


def max_concurrent_runs(marks: list[str]) -> int:
    """The largest number of runs between their ``start`` and ``end`` marks at one moment."""
    events: list[tuple[int, int]] = []
    for line in marks:
        what, _job, _attempt, ns = line.split()
        events.append((int(ns), 1 if what == "start" else -1))
    peak = running = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def submit(url: str, key: str, n: int) -> str:
    script = f"{LAUNCH_MARK.format('start')}; sleep 0.3; {LAUNCH_MARK.format('end')}"
    response = httpx.post(
        f"{url}/api/v1/jobs",
        json={"name": f"j{n}", "command": ["sh", "-c", script], "resources": {"chip": "cpu"}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_terminal(url: str, key: str, ids: set[str], timeout_s: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        jobs = httpx.get(
            f"{url}/api/v1/jobs",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        states = {j["id"]: j["state"] for j in jobs if j["id"] in ids}
        if len(states) == len(ids) and all(
            s in ("succeeded", "failed", "cancelled") for s in states.values()
        ):
            return states
        time.sleep(0.3)
    raise AssertionError(f"jobs not terminal after {timeout_s}s: {states}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_control_planes_never_run_a_job_twice(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    platform = build_platform(Settings(data_dir=data, database_url=db_url))
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="acme",
        scope=Scope.TENANT_MEMBER,
        name="",
        expires_in_s=None,
    ).secret
    env = os.environ | {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_TICK_S": "0.05",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    servers = [Server(env, free_port(), tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        urls = [f"http://127.0.0.1:{s.port}" for s in servers]
        ids = {submit(urls[n % 2], key, n) for n in range(JOBS)}
        states = wait_terminal(urls[0], key, ids)
    finally:
        for server in servers:
            server.stop()

    engine = platform.uows.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        attempts = dict(
            conn.execute(select(AttemptRow.job, func.count()).group_by(AttemptRow.job)).all()
        )
        active = conn.execute(
            select(func.count()).select_from(AllocationRow).where(AllocationRow.active.is_(True))
        ).scalar_one()
    engine.dispose()
    marks = launch_marks(data)
    overlaps, starts = overlapping_runs(marks)
    assert states == dict.fromkeys(ids, "succeeded")
    assert starts == dict.fromkeys(ids, 1), "a job started more than once"
    assert attempts == dict.fromkeys(ids, 1), "a job was admitted more than once"
    assert overlaps == 0
    assert max_concurrent_runs(marks) <= CARDS, "more runs at once than cards"
    assert active == 0
