"""The gateway's ``GET /metrics``: counts match the requests served, labels stay bounded and
never carry a key; several worker processes add up through prometheus_client's files."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway_support import CHAT, FakeKeys, MemorySink, chat_body, client_for, make_gateway, replica
from suanwang.domain.limits import KeyLimits, Limits, TenantLimits
from suanwang.gateway.breaker import THRESHOLD


class _Refusing(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(all_: dict[Any, float], name: str, **labels: str) -> float:
    return all_.get((name, tuple(sorted(labels.items()))), 0.0)


async def exercise(app: Any, key: str, other: str) -> tuple[list[int], str]:
    auth = {"authorization": f"Bearer {key}"}
    statuses = []
    async with client_for(app) as client:
        for body in (
            chat_body(max_tokens=5),
            chat_body(max_tokens=5, stream=True),
            chat_body(max_tokens=5),  # the key's rpm=2: refused
        ):
            statuses.append(
                (await client.post("/v1/chat/completions", json=body, headers=auth)).status_code
            )
        bad_model = {"model": f"gpt-{key}", "messages": [{"role": "user", "content": "x"}]}
        statuses.append(
            (
                await client.post(
                    "/v1/chat/completions",
                    json=bad_model,
                    headers={"authorization": f"Bearer {other}"},
                )
            ).status_code
        )
        statuses.append(
            (
                await client.get("/v1/models", headers={"authorization": f"Bearer {key}z"})
            ).status_code
        )
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    return statuses, scraped.text


def test_metrics_count_requests_tokens_and_rejections_without_keys() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key, other = keys.add("acme"), keys.add("beta")
    app = make_gateway([replica("r1")], keys=keys, sink=sink, limits=Limits(key=KeyLimits(rpm=2)))
    statuses, text = asyncio.run(exercise(app, key, other))
    assert statuses == [200, 200, 429, 404, 401]
    got = samples(text)
    name = "suanwang_gateway_requests_total"
    assert value(got, name, route="chat/completions", model=CHAT, status="200") == 2
    assert value(got, name, route="chat/completions", model=CHAT, status="429") == 1
    assert value(got, name, route="chat/completions", model="other", status="404") == 1
    assert value(got, name, route="models", model="", status="401") == 1
    latency = "suanwang_gateway_request_seconds_count"
    assert value(got, latency, route="chat/completions", model=CHAT) == 3
    ok = [r for r in sink.rows.values() if r.status == 200]
    tokens = "suanwang_gateway_tokens_total"
    assert value(got, tokens, model=CHAT, direction="in") == sum(r.prompt_tokens for r in ok)
    assert (
        value(got, tokens, model=CHAT, direction="out")
        == sum(r.completion_tokens for r in ok)
        == 10
    )
    assert value(got, "suanwang_gateway_limit_rejections_total", kind="key.rpm") == 1
    for secret in (key, other, key[:12], "key-0", "acme"):
        assert secret not in text  # no key, key id or tenant in any label


def test_metrics_count_upstream_errors_failovers_ejections_and_quota() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("bad", base="bad://x"), replica("good", base="mock://y")],
        keys=keys,
        sink=sink,
        limits=Limits(tenant=TenantLimits(token_quota=100)),
        transports={
            "bad": _Refusing(),
            "mock": httpx.ASGITransport(app=__import__("gateway_support").load_mock().MockEngine()),
        },
    )

    async def go() -> str:
        auth = {"authorization": f"Bearer {key}"}
        async with client_for(app) as client:
            codes = [
                (
                    await client.post(
                        "/v1/chat/completions",
                        json=chat_body(max_tokens=20, user=f"u{i}"),
                        headers=auth,
                    )
                ).status_code
                for i in range(8)
            ]
            assert 200 in codes
            assert 429 in codes
            return (await client.get("/metrics")).text

    got = samples(asyncio.run(go()))
    errors = value(got, "suanwang_gateway_upstream_errors_total", model=CHAT, reason="ConnectError")
    ejections = value(got, "suanwang_gateway_replica_ejections_total", model=CHAT, replica="bad")
    failovers = value(got, "suanwang_gateway_failovers_total", model=CHAT)
    assert errors == failovers >= 1  # each failure retried elsewhere
    assert ejections == (1 if errors >= THRESHOLD else 0)  # the breaker opened once
    assert value(got, "suanwang_gateway_limit_rejections_total", kind="tenant.token_quota") >= 1


WORKER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from gateway_support import FakeKeys, MemorySink, chat_body, client_for, make_gateway, replica
keys, sink = FakeKeys(), MemorySink()
key = keys.add("acme")
app = make_gateway([replica("r1")], keys=keys, sink=sink)
n = int(sys.argv[1])
async def go():
    async with client_for(app) as client:
        for _ in range(n):
            await client.post("/v1/chat/completions", json=chat_body(max_tokens=3),
                              headers={"authorization": "Bearer " + key})
        print((await client.get("/metrics")).text)
asyncio.run(go())
"""


def test_workers_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two processes with one PROMETHEUS_MULTIPROC_DIR: the second one's scrape counts both."""
    env = {**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    here = str(Path(__file__).resolve().parents[1])

    def worker(n: int) -> dict[Any, float]:
        out = subprocess.run(
            [sys.executable, "-c", WORKER, str(n), here],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return samples(out)

    worker(2)
    both = worker(3)
    name = "suanwang_gateway_requests_total"
    assert value(both, name, route="chat/completions", model=CHAT, status="200") == 5
