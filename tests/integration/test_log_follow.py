"""Log follow streams against a real server: 48 open followers stall nobody, are capped per
key and overall (429 with Retry-After), and a follower that disconnects frees its slot.

Before follow streams were async, each held one of the server's 40 worker threads while it
waited, so 45 followers (read-only keys suffice) stalled every tenant's requests.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from procs import Server, free_port

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.jobs import JobSpec, Resources
from suanwang.domain.tenancy import Principal, Scope

FLEET = """
regions: [{name: r1}]
clusters:
  - {name: sim, region: r1, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""
PER_KEY = 4
FOLLOWER_KEYS = 12
TOTAL = PER_KEY * FOLLOWER_KEYS  # 48 streams: more than the server's 40 worker threads
OPERATOR = Principal("op", Scope.OPERATOR, None)


@dataclass
class Setup:
    url: str
    job: str
    followers: list[str]
    """Read-only keys of the job's tenant; one more than the overall cap lets open."""
    other: str
    """A key of another tenant."""


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[Setup]:
    data = tmp_path / "data"
    platform = build_platform(Settings(data_dir=data, database_url=db_url))
    platform.fleet.apply_yaml(FLEET)
    keys: dict[str, list[str]] = {}
    for tenant, scope, count in (
        ("acme", Scope.READ_ONLY, FOLLOWER_KEYS + 1),
        ("other", Scope.TENANT_MEMBER, 1),
    ):
        platform.tenancy.create_tenant(tenant, tenant, {})
        keys[tenant] = [
            platform.tenancy.create_key(
                OPERATOR, tenant=tenant, scope=scope, name="", expires_in_s=None
            ).secret
            for _ in range(count)
        ]
    submitter = platform.tenancy.create_key(
        OPERATOR, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    ).secret
    spec = JobSpec(
        name="long", command=(), resources=Resources(chip="ascend-910b"), simulate_duration_s=3600
    )
    job = platform.jobs.submit(platform.tenancy.authenticate(submitter), spec, None).job.id
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    port = free_port()
    env = os.environ | {
        "SUANWANG_DATA_DIR": str(data),
        "SUANWANG_DATABASE_URL": db_url,
        "SUANWANG_TICK_S": "0.2",
        "SUANWANG_LOG_FOLLOW_PER_KEY": str(PER_KEY),
        "SUANWANG_LOG_FOLLOW_MAX": str(TOTAL),
    }
    server = Server(env, port, tmp_path / "server.log")
    server.start()
    try:
        yield Setup(f"http://127.0.0.1:{port}", job, keys["acme"], keys["other"][0])
    finally:
        server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_running(setup: Setup) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = httpx.get(f"{setup.url}/api/v1/jobs/{setup.job}", headers=bearer(setup.followers[0]))
        if job.json()["state"] == "running":
            return
        time.sleep(0.1)
    raise AssertionError("the job did not start")


async def open_follow(
    client: httpx.AsyncClient, stack: AsyncExitStack, setup: Setup, key: str
) -> httpx.Response:
    """A follow stream of ``setup.job``; 200 streams stay open on ``stack``."""
    request = client.build_request(
        "GET", f"/api/v1/jobs/{setup.job}/logs", params={"follow": "true"}, headers=bearer(key)
    )
    response = await client.send(request, stream=True)
    if response.status_code == 200:
        stack.push_async_callback(response.aclose)
        chunks = response.aiter_raw()
        stack.push_async_callback(chunks.aclose)  # dropping it would close the stream
        first = await chunks.__anext__()
        assert first.startswith(b"[simulated]")
    else:
        await response.aread()
        await response.aclose()
    return response


async def timed_get(client: httpx.AsyncClient, path: str, key: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = await client.get(path, headers=bearer(key))
    return response.status_code, time.perf_counter() - started


async def check_follow_streams(setup: Setup) -> None:
    limits = httpx.Limits(max_connections=TOTAL + 20, max_keepalive_connections=0)
    timeout = httpx.Timeout(10.0)
    async with (
        httpx.AsyncClient(base_url=setup.url, limits=limits, timeout=timeout) as client,
        AsyncExitStack() as stack,
    ):
        keys = [k for k in setup.followers[:FOLLOWER_KEYS] for _ in range(PER_KEY)]
        opened = await asyncio.gather(*(open_follow(client, stack, setup, k) for k in keys))
        assert [r.status_code for r in opened] == [200] * TOTAL

        # Other tenants' requests are answered at once while 48 followers wait.
        probes = [("/healthz", setup.other), ("/api/v1/jobs", setup.other)] * 8
        answers = await asyncio.gather(*(timed_get(client, p, k) for p, k in probes))
        assert [status for status, _ in answers] == [200] * len(probes)
        assert max(seconds for _, seconds in answers) < 5.0, answers  # before: no answer

        # The fifth stream of one key, and any stream past the overall cap: 429.
        for key, says in ((setup.followers[0], "this key"), (setup.followers[-1], "the server")):
            refused = await open_follow(client, stack, setup, key)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "5"
            assert refused.headers["content-type"].startswith("application/problem+json")
            problem = refused.json()
            assert problem["field"] == "follow"
            assert problem["detail"].startswith(says)

        # A follower that goes away frees its slot.
        await opened[0].aclose()
        deadline = time.monotonic() + 5
        while True:
            again = await open_follow(client, stack, setup, setup.followers[0])
            if again.status_code == 200:
                break
            assert time.monotonic() < deadline, "a closed stream kept its slot"
            await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
def test_follow_streams_are_async_capped_and_freed_on_disconnect(served: Setup) -> None:
    wait_running(served)
    asyncio.run(check_follow_streams(served))
