"""A replica's in-flight count has one owner, :meth:`Router.lease`: it goes up while a request
is sent and answered, and back down however the request ends (answer, engine error, failover,
timeout, cancellation)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway_support import (
    FakeKeys,
    MemorySink,
    StaticDirectory,
    SystemClockForTests,
    chat_body,
    client_for,
    load_mock,
    make_gateway,
    replica,
)
from suanwang.gateway import Router

CONCURRENCY = 12


def test_a_lease_counts_one_request_until_its_block_ends_even_by_an_exception() -> None:
    router = Router(StaticDirectory([]), SystemClockForTests(), refresh_s=1.0, eject_s=1.0)
    router.load([replica("r1")])
    (slot,) = router.visible("smollm2-135m-instruct", "acme")
    with router.lease(slot), router.lease(slot):
        assert slot.outstanding == 2
    assert slot.outstanding == 0
    counted: list[int] = []

    def request_that_fails() -> None:
        with router.lease(slot):
            counted.append(slot.outstanding)
            raise RuntimeError("the engine went away")

    with pytest.raises(RuntimeError):
        request_that_fails()
    assert counted == [1]
    assert slot.outstanding == 0


class _Raising(httpx.AsyncBaseTransport):
    """An engine that never answers: every request raises ``error``."""

    def __init__(self, error: type[httpx.TransportError]) -> None:
        self.error = error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.error("no answer", request=request)


class _Watching(httpx.AsyncBaseTransport):
    """The mock engine, noting every replica's in-flight count while it works on a request."""

    def __init__(self) -> None:
        self.inner = httpx.ASGITransport(app=load_mock().MockEngine())
        self.router: Router | None = None
        self.seen: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert self.router is not None
        slots = self.router.visible("smollm2-135m-instruct", "acme")
        self.seen.append(sum(s.outstanding for s in slots))
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("stream", [False, True])
def test_in_flight_counts_rise_with_concurrent_requests_and_return_to_zero(stream: bool) -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    good = _Watching()
    app = make_gateway(
        [
            replica("refuses", base="refuses://x"),
            replica("fails", base="fails://x"),
            replica("good", base="good://x"),
        ],
        keys=keys,
        sink=sink,
        transports={
            "refuses": _Raising(httpx.ConnectError),
            "fails": httpx.ASGITransport(app=load_mock().MockEngine(fail_status=500)),
            "good": good,
        },
    )
    good.router = app.gw.router
    body = chat_body(stream=stream, mock={"delay_ms": 100})

    async def scenario() -> list[int]:
        async with client_for(app) as client:
            headers = {"authorization": f"Bearer {key}"}
            calls = [
                client.post("/v1/chat/completions", json={**body, "user": f"u{i}"}, headers=headers)
                for i in range(CONCURRENCY)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(scenario()) == [200] * CONCURRENCY
    assert max(good.seen) > 1  # requests overlapped on the good replica
    assert all(1 <= n <= CONCURRENCY for n in good.seen)
    slots = app.gw.router.visible("smollm2-135m-instruct", "acme")
    assert {s.replica.replica_id: s.outstanding for s in slots} == {
        "refuses": 0,
        "fails": 0,
        "good": 0,
    }
    assert {row.replica for row in sink.rows.values()} == {"good"}


@pytest.mark.parametrize(
    ("transport", "status"),
    [
        (lambda: _Raising(httpx.ReadTimeout), 504),
        (lambda: _Raising(httpx.ConnectError), 503),
        (lambda: httpx.ASGITransport(app=load_mock().MockEngine(fail_status=400)), 400),
    ],
)
def test_a_failed_request_leaves_nothing_in_flight(transport: Any, status: int) -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("only", base="only://x")], keys=keys, sink=sink, transports={"only": transport()}
    )

    async def scenario() -> list[int]:
        async with client_for(app) as client:
            headers = {"authorization": f"Bearer {key}"}
            calls = [
                client.post("/v1/chat/completions", json=chat_body(), headers=headers)
                for _ in range(8)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(scenario()) == [status] * 8
    (slot,) = app.gw.router.visible("smollm2-135m-instruct", "acme")
    assert slot.outstanding == 0
    assert [row.status for row in sink.rows.values()] == [status] * 8
