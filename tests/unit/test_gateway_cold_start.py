"""Demand reporting and cold starts in the gateway (the reporter task, then cold starts): a request for an autoscaled deployment with no ready replica
waits (counted as queued demand) until one is ready, or gets 503 + Retry-After past the
timeout; another tenant's private deployment stays "model not found" and is never woken."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from gateway_support import (
    CHAT,
    FakeKeys,
    MemorySink,
    chat_body,
    client_for,
    make_gateway,
    replica,
)
from suanwang.domain.demand import DemandReport
from suanwang.domain.serving import DeploymentView
from suanwang.gateway import GatewayApp, GatewayConfig

DEP = replica("r1").deployment_id


def asleep(owner: str | None = None, timeout_s: float = 5.0) -> tuple[GatewayApp, str, str]:
    """A gateway whose only deployment of CHAT is autoscaled and at zero replicas."""
    keys, sink = FakeKeys(), MemorySink()
    mine, other = keys.add("acme"), keys.add("globex")
    config = GatewayConfig(eject_s=5.0, cold_start_timeout_s=timeout_s)
    app = make_gateway([], keys=keys, sink=sink, config=config)
    app.gw.router.load([], [DeploymentView(DEP, CHAT, owner)])
    return app, mine, other


async def chat(app: GatewayApp, key: str, **extra: Any) -> httpx.Response:
    async with client_for(app) as client:
        return await client.post(
            "/v1/chat/completions",
            json=chat_body(**extra),
            headers={"authorization": f"Bearer {key}"},
        )


def test_a_request_waits_for_a_cold_start_as_queued_demand_and_is_answered() -> None:
    app, key, _ = asleep()

    async def scenario() -> tuple[list[int], list[httpx.Response]]:
        calls = [asyncio.create_task(chat(app, key, stream=i % 2 == 1)) for i in range(8)]
        await asyncio.sleep(0.3)
        queued = [r.queued for r in app.demand.reports([DEP], {}, 0.0)]
        app.gw.router.load([replica("r1")], [DeploymentView(DEP, CHAT, None)])  # ready now
        return queued, list(await asyncio.gather(*calls))

    queued, answers = asyncio.run(scenario())
    assert queued == [8]
    assert [a.status_code for a in answers] == [200] * 8
    assert all(b"data: [DONE]" in a.content for a in answers[1::2])
    (after,) = app.demand.reports([DEP], {}, 0.0)
    assert after.queued == 0
    assert after.last_request_at is not None


def test_past_the_cold_start_timeout_the_answer_is_503_with_retry_after() -> None:
    app, key, _ = asleep(timeout_s=0.3)
    answer = asyncio.run(chat(app, key))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "10"
    assert answer.json()["error"]["code"] == "cold_start_timeout"
    (after,) = app.demand.reports([DEP], {}, 0.0)
    assert after.queued == 0


def test_another_tenant_cannot_wake_a_private_deployment() -> None:
    app, mine, other = asleep(owner="acme", timeout_s=0.3)
    answer = asyncio.run(chat(app, other))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    (report,) = app.demand.reports([DEP], {}, 0.0)
    assert (report.queued, report.last_request_at) == (0, None)  # not counted as demand
    assert asyncio.run(chat(app, mine)).status_code == 503  # its owner does wake it


def test_a_fixed_deployment_still_answers_503_at_once_while_starting() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    starting = dataclasses.replace(replica("r1"), ready=False)
    app = make_gateway([starting], keys=keys, sink=sink)
    answer = asyncio.run(chat(app, key))
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "model_not_ready")


class MemoryDemand:
    """A DemandSink keeping every report."""

    def __init__(self) -> None:
        self.reports: list[DemandReport] = []

    def record(self, gateway: str, reports: Sequence[DemandReport]) -> None:
        assert all(r.gateway == gateway for r in reports)
        self.reports.extend(reports)


def test_the_gateway_reports_its_demand_periodically_while_it_runs() -> None:
    keys, sink, demand = FakeKeys(), MemorySink(), MemoryDemand()
    key = keys.add("acme")
    config = GatewayConfig(eject_s=5.0, report_s=0.05)
    app = make_gateway([replica("r1")], keys=keys, sink=sink, config=config)
    app.gw.demand_sink = demand

    async def scenario() -> None:
        started: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})

        async def send(message: dict[str, Any]) -> None:
            await started.put(message)

        life = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
        assert (await started.get())["type"] == "lifespan.startup.complete"
        assert (await chat(app, key)).status_code == 200
        await asyncio.sleep(0.3)
        await inbox.put({"type": "lifespan.shutdown"})
        await life

    asyncio.run(scenario())
    mine = [r for r in demand.reports if r.deployment == DEP]
    assert len(mine) >= 3
    assert mine[-1].routed_at > 0
    assert mine[-1].last_request_at is not None
    assert mine[-1].inflight == 0
    assert any(r.tokens_per_s > 0 for r in mine)


def test_a_client_that_leaves_during_a_cold_start_stops_waiting_and_counting() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway([], keys=keys, sink=sink, config=GatewayConfig(cold_start_timeout_s=30))
    app.gw.router.load([], [DeploymentView(DEP, CHAT, None)])
    body = json.dumps(chat_body()).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(0.5)
        return {"type": "http.disconnect"}

    async def send(_: Any) -> None:
        return None

    async def scenario() -> float:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"authorization", f"Bearer {key}".encode())],
        }
        began = time.monotonic()
        await app(scope, receive, send)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 5.0  # not the 30 s timeout
    (report,) = app.demand.reports([DEP], {}, 0.0)
    assert report.queued == 0
    (usage,) = sink.rows.values()
    assert (usage.status, usage.outcome.value) == (499, "client_disconnect")
