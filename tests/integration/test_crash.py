"""kill -9 of the control plane at random moments while clients submit jobs (suite R1).

A real server process (uvicorn) is killed with SIGKILL 30 times at random moments while two
clients submit jobs with Idempotency-Keys and retry on any failure. Local jobs (sandboxed)
print ``start``/``end`` lines into their logs, so a double run would be visible. Afterwards:
0 lost acknowledged jobs, 0 duplicates, 0 jobs running twice at once, every job succeeded
exactly once, no capacity left allocated, and (SQLite) ``PRAGMA integrity_check`` is ok.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from procs import LAUNCH_MARK, Server, free_port, launch_marks, overlapping_runs
from sqlalchemy import func, select, text

from suanwang.adapters.db.tables import AllocationRow, JobRow
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

KILLS = int(os.environ.get("SUANWANG_CRASH_KILLS", "30"))
PG_KILLS = int(os.environ.get("SUANWANG_CRASH_KILLS_PG", "10"))
"""R1 is specified on SQLite (WAL, synchronous=FULL): 30 kills a PR run. The PostgreSQL run
repeats it with 10 (nightly: ``SUANWANG_CRASH_KILLS_PG=300``): the server's durability is
PostgreSQL's there, and what the run checks is our idempotency and recovery on that dialect."""
SEED = int(os.environ.get("SUANWANG_CRASH_SEED", "20261125"))
FLEET = """
regions: [{name: here}, {name: far}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 6}]}
  - {name: sim, region: far, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""


class Submitter(threading.Thread):
    """Submits jobs with Idempotency-Keys, retrying each until acknowledged."""

    def __init__(self, url: str, key: str, rng: random.Random, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.rng, self.stop = url, key, rng, stop
        self.acked: dict[str, str] = {}
        self.retries = 0

    def body(self) -> dict[str, Any]:
        if self.rng.random() < 0.3:
            return {
                "name": "sim",
                "resources": {"chip": "ascend-910b"},
                "simulate": {"duration_s": 0.5},
            }
        script = f"{LAUNCH_MARK.format('start')}; sleep 0.3; {LAUNCH_MARK.format('end')}"
        return {"name": "local", "command": ["sh", "-c", script], "resources": {"chip": "cpu"}}

    def run(self) -> None:
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=5
        ) as client:
            while not self.stop.is_set():
                idem, body = str(uuid.uuid4()), self.body()
                while not self.stop.is_set():
                    try:
                        response = client.post(
                            "/api/v1/jobs", json=body, headers={"Idempotency-Key": idem}
                        )
                    except httpx.TransportError:
                        self.retries += 1
                        time.sleep(0.05)
                        continue
                    if response.status_code in (200, 201):
                        self.acked[idem] = response.json()["id"]
                        break
                    assert response.status_code >= 500, response.text
                    self.retries += 1
                time.sleep(self.rng.uniform(0.02, 0.15))


def wait_all_terminal(url: str, key: str, ids: set[str], timeout_s: float = 120) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        while time.monotonic() < deadline:
            jobs = client.get("/api/v1/jobs", params={"limit": 1000}).json()
            states = {j["id"]: j["state"] for j in jobs if j["id"] in ids}
            if len(states) == len(ids) and all(
                s in ("succeeded", "failed", "cancelled") for s in states.values()
            ):
                return states
            time.sleep(0.5)
    raise AssertionError(
        f"jobs not terminal: { {k: v for k, v in states.items() if v not in ('succeeded',)} }"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_dash_nine_loses_nothing(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, database_url=db_url)
    platform = build_platform(settings)
    platform.fleet.apply_yaml(FLEET)
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="acme",
        scope=Scope.TENANT_MEMBER,
        name="",
        expires_in_s=None,
    ).secret
    port = free_port()
    env = os.environ | {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_TICK_S": "0.1",
        "SUANWANG_SIM_SPEEDUP": "1",
        "SUANWANG_LOG_LEVEL": "warning",
    }
    server = Server(env, port, tmp_path / "server.log")
    kills = KILLS if db_url.startswith("sqlite") else PG_KILLS
    rng = random.Random(SEED)
    stop = threading.Event()
    url = f"http://127.0.0.1:{port}"
    clients = [Submitter(url, key, random.Random(SEED + i), stop) for i in range(2)]
    try:
        server.start()
        for c in clients:
            c.start()
        for _ in range(kills):
            time.sleep(rng.uniform(0.1, 1.2))
            server.kill()
            server.start()
        stop.set()
        for c in clients:
            c.join(timeout=30)
        acked = {k: v for c in clients for k, v in c.acked.items()}
        states = wait_all_terminal(url, key, set(acked.values()))
    finally:
        stop.set()
        server.stop()

    engine = platform.uows.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(select(JobRow.idempotency_key, JobRow.id)).all()
        active = conn.execute(
            select(func.count()).select_from(AllocationRow).where(AllocationRow.active.is_(True))
        ).scalar_one()
        integrity = (
            conn.execute(text("PRAGMA integrity_check")).scalar_one()
            if db_url.startswith("sqlite")
            else "ok"
        )
    engine.dispose()
    stored = defaultdict(list)
    for idem, job_id in rows:
        stored[idem].append(job_id)
    lost = [k for k, v in acked.items() if stored.get(k) != [v]]
    duplicates = [k for k, v in stored.items() if len(v) > 1]
    overlaps, starts = overlapping_runs(launch_marks(data))
    local_ids = {j for j in acked.values() if j in starts}
    twice = [j for j, n in starts.items() if n > 1]
    not_succeeded = {j: s for j, s in states.items() if s != "succeeded"}
    p95 = statistics.quantiles(server.ready_s, n=20)[-1]
    sys.stderr.write(
        f"\nR1 {db_url.split(':')[0]}: kills={kills} acked={len(acked)} local_runs={len(local_ids)} "
        f"client_retries={sum(c.retries for c in clients)} lost={len(lost)} duplicates={len(duplicates)} "
        f"concurrent_double_runs={overlaps} started_twice={len(twice)} not_succeeded={len(not_succeeded)} "
        f"active_allocations={active} integrity={integrity} restart_to_ready_p95={p95:.2f}s\n"
    )
    assert len(acked) >= kills, "too few submissions to mean anything"
    assert lost == []
    assert duplicates == []
    assert overlaps == 0
    assert twice == []
    assert not_succeeded == {}
    assert active == 0
    assert integrity == "ok"
