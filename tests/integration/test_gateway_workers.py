"""``suanwang gateway --workers 2`` as an operator runs it: both workers serve, and the
limits and the ledger are those of one gateway (Redis shares the counters)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_stack import CHAT, Stack, free_port, make_stack, wait_up
from prometheus_client.parser import text_string_to_metric_families

from suanwang.domain.limits import TenantLimits

RPM = 50
PERIOD = 86400


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Stack, str, subprocess.Popen[bytes]]]:
    stack = make_stack(tmp_path)
    try:
        port = stack.start_mock("a")
        stack.add_deployment("dep-chat", CHAT, [f"http://127.0.0.1:{port}"])
        gw_port = free_port()
        log = tmp_path / "gateway-cli.log"
        with log.open("ab") as out:
            command = ["gateway", "--workers", "2", "--port", str(gw_port)]
            proc = subprocess.Popen(
                [sys.executable, "-m", "suanwang.cli.main", *command],
                env={**stack.env, "SUANWANG_HOST": "127.0.0.1"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_up(f"http://127.0.0.1:{gw_port}/health", proc, log, timeout_s=60)
            yield stack, f"http://127.0.0.1:{gw_port}/v1", proc
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        stack.stop()


def test_two_workers_serve_share_limits_and_meter_exactly(
    workers: tuple[Stack, str, subprocess.Popen[bytes]],
) -> None:
    stack, url, proc = workers
    key, key_id = stack.tenant_with_key(
        "wk-t", TenantLimits(rpm=RPM, token_quota=10**6, period_s=PERIOD)
    )
    both_workers_serving(stack, url, proc)
    if time.time() % 60 > 45:  # keep the 200 requests inside one rate window
        time.sleep(60 - time.time() % 60 + 0.1)
    before = chat_counts(url)
    statuses = asyncio.run(burst(url, key, 200))
    assert statuses.count(200) == RPM  # one limit for both workers, not one each
    assert statuses.count(429) == 200 - RPM
    by_worker = journal_records(stack, key_id)
    assert len(by_worker) == 2, by_worker  # both workers took part of the load
    assert sum(by_worker.values()) == 200
    rows = stack.wait_ledger("wk-t", 200)
    assert len({r["entry_id"] for r in rows}) == len(rows) == 200  # one row per request
    assert sum(r["outcome"] == "ok" for r in rows) == RPM
    billed = sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in rows)
    used, reserved = stack.redis_balance("wk-t", PERIOD)
    assert reserved == 0
    assert used == billed > 0  # ledger exact
    # metrics: whichever worker answers the scrape sums both (PROMETHEUS_MULTIPROC_DIR)
    for _ in range(3):
        after = chat_counts(url)
        added = {status: after[status] - before.get(status, 0) for status in after}
        assert added == {"200": RPM, "429": 200 - RPM}


async def burst(url: str, key: str, count: int) -> list[int]:
    """``count`` chat requests at once, each on a new connection (so both workers accept)."""
    body = {"model": CHAT, "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one() -> int:
            r = await client.post(
                url + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            return r.status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


def both_workers_serving(stack: Stack, url: str, proc: subprocess.Popen[bytes]) -> None:
    """Warm up with another tenant until each worker has metered a request: on a loaded
    machine one worker may still be starting when the first requests arrive."""
    warm, _ = stack.tenant_with_key("wk-warm", TenantLimits(token_quota=10**6, period_s=PERIOD))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert set(asyncio.run(burst(url, warm, 20))) == {200}
        if len(journal_pids(stack) & children(proc.pid)) == 2:
            return
    pytest.fail(f"a worker never served: journals {journal_pids(stack)}")


def journal_pids(stack: Stack) -> set[int]:
    names = {p.name.split("-")[0] for p in stack.settings.usage_journal_dir.glob("*")}
    return {int(pid) for pid in names if pid.isdigit()}


def journal_records(stack: Stack, key_id: str) -> dict[str, int]:
    """Journaled records of ``key_id``, by the pid of the worker that wrote them."""
    counts: dict[str, int] = {}
    for path in stack.settings.usage_journal_dir.glob("*.usage.jsonl"):
        pid = path.name.split("-")[0]
        mine = sum(json.loads(line)["key_id"] == key_id for line in path.read_text().splitlines())
        if mine:
            counts[pid] = counts.get(pid, 0) + mine
    return counts


def chat_counts(url: str) -> dict[str, float]:
    """Chat requests by status, summed over both workers by whichever answers the scrape."""
    scraped = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "suanwang_gateway_requests_total" and s.labels["route"] == "chat/completions"
    }
