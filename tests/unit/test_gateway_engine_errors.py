"""Engine answers classified (caller's error vs engine failure), the circuit breaker, the
billing of refused and cut answers, tool-call deltas and n made of several engine calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway_support import (
    CHAT,
    FakeKeys,
    MemorySink,
    chat_body,
    client_for,
    make_gateway,
    replica,
)
from suanwang.domain.usage import Outcome
from suanwang.gateway import GatewayConfig
from suanwang.gateway.breaker import MAX_OPEN_S, THRESHOLD, Breaker, BreakerState
from suanwang.gateway.engine_errors import Verdict, classify, refusal

LLAMA_CONTEXT = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 5000,
        "n_ctx": 4096,
    }
}
VLLM_CONTEXT = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, you requested 5000",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}
Reply = tuple[int, Any]
"""(status, JSON body) or (200, [SSE event bytes...])."""


class Scripted:
    """An engine (ASGI) answering every request with ``reply(body)``; counts its calls."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply], delay_s: float = 0.0) -> None:
        self.reply = reply
        self.calls = 0
        self.delay_s = delay_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        if not scope["path"].endswith("/completions"):  # no prompt-count routes here
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        status, payload = self.reply(json.loads(raw))
        if isinstance(payload, list):
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            for event in payload:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": data})


def sse(event: Any) -> bytes:
    return b"data: " + (event if isinstance(event, bytes) else json.dumps(event).encode()) + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "model": CHAT, "choices": [choice]}


def gateway(
    engines: dict[str, Scripted], engine: str = "llama.cpp", **config: Any
) -> tuple[Any, MemorySink, str]:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    replicas = [replica(name, base=f"{name}://x", engine=engine) for name in engines]
    transports = {name: httpx.ASGITransport(app=app) for name, app in engines.items()}
    cfg = GatewayConfig(**config)
    app = make_gateway(replicas, keys=keys, sink=sink, transports=transports, config=cfg)
    return app, sink, key


async def send_many(app: Any, key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with client_for(app) as client:
        headers = {"authorization": f"Bearer {key}"}
        return await asyncio.gather(
            *(client.post("/v1/chat/completions", json=b, headers=headers) for b in bodies)
        )


def test_breaker_opens_after_failures_in_a_row_then_admits_one_trial() -> None:
    breaker = Breaker(open_s=5.0)
    assert not breaker.failed(0.0)
    breaker.succeeded()  # an answer in between resets the count
    assert [breaker.failed(1.0) for _ in range(THRESHOLD)] == [False] * (THRESHOLD - 1) + [True]
    assert breaker.state(2.0) is BreakerState.OPEN
    assert not breaker.admits(5.9)
    assert breaker.state(6.0) is BreakerState.HALF_OPEN
    assert breaker.admits(6.0)
    assert breaker.begin(6.0)  # the trial
    assert not breaker.admits(6.1)  # one at a time
    assert breaker.failed(6.2)  # the trial failed: open again, twice as long
    assert breaker.open_until == pytest.approx(16.2)
    breaker.end_trial()
    assert breaker.begin(16.2)
    breaker.succeeded()
    assert breaker.state(16.3) is BreakerState.CLOSED
    for at in range(20):
        for _ in range(THRESHOLD):
            breaker.failed(1000.0 * at)
    assert breaker.open_until - 19000.0 == MAX_OPEN_S


def test_status_classes_and_refusal_codes() -> None:
    assert classify(200) is Verdict.OK
    assert [classify(s) for s in (400, 413, 422, 501)] == [Verdict.REFUSED] * 4
    assert [classify(s) for s in (429, 503)] == [Verdict.BUSY] * 2
    assert [classify(s) for s in (404, 405, 500, 502)] == [Verdict.FAILED] * 4
    assert [classify(s) for s in (401, 403)] == [Verdict.REJECTED] * 2
    for body in (LLAMA_CONTEXT, VLLM_CONTEXT):
        error = refusal(json.dumps(body).encode())
        assert (error.status, error.code, error.param) == (
            400,
            "context_length_exceeded",
            "messages",
        )
    other = refusal(b'{"error": {"message": "bad grammar", "type": "invalid_request_error"}}')
    assert (other.code, other.param) == ("invalid_value", None)
    assert "bad grammar" in other.message
    assert refusal(b"<html>oops</html>").code == "invalid_value"


def test_an_engine_refusal_is_the_callers_400_never_retried_never_ejected_billed_zero() -> None:
    a, b = Scripted(lambda _: (400, LLAMA_CONTEXT)), Scripted(lambda _: (400, LLAMA_CONTEXT))
    app, sink, key = gateway({"a": a, "b": b})
    bodies = [chat_body(user=f"u{i}", stream=i % 2 == 1) for i in range(20)]
    responses = asyncio.run(send_many(app, key, bodies))
    for response in responses:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"
    assert a.calls + b.calls == 20  # one engine call each: no retry elsewhere
    assert {app.gw.router.state(r) for r in ("a", "b")} == {BreakerState.CLOSED}
    assert {(r.prompt_tokens, r.completion_tokens) for r in sink.rows.values()} == {(0, 0)}
    assert {r.outcome for r in sink.rows.values()} == {Outcome.REJECTED}
    text = app.metrics.render().decode()
    assert "suanwang_gateway_replica_ejections_total{" not in text
    assert 'code="context_length_exceeded",model="smollm2-135m-instruct"} 20.0' in text


def test_a_stream_whose_first_event_is_an_error_is_a_400_billed_zero() -> None:
    engine = Scripted(lambda _: (200, [sse(LLAMA_CONTEXT)]))
    app, sink, key = gateway({"a": engine})
    (response,) = asyncio.run(send_many(app, key, [chat_body(stream=True)]))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    (row,) = sink.rows.values()
    assert (row.prompt_tokens, row.completion_tokens, row.status) == (0, 0, 400)
    assert app.gw.router.state("a") is BreakerState.CLOSED


def test_busy_engines_are_skipped_without_ejection_and_5xx_opens_the_breaker() -> None:
    busy = Scripted(lambda _: (503, {"error": {"message": "Loading model"}}))
    good = Scripted(lambda b: (200, plain_answer(b)))
    app, _, key = gateway({"busy": busy, "good": good})
    responses = asyncio.run(send_many(app, key, [chat_body(user=f"u{i}") for i in range(12)]))
    assert {r.status_code for r in responses} == {200}
    assert busy.calls >= THRESHOLD
    assert app.gw.router.state("busy") is BreakerState.CLOSED
    broken = Scripted(lambda _: (500, {"error": {"message": "CUDA error"}}))
    app, _, key = gateway({"broken": broken, "good": Scripted(lambda b: (200, plain_answer(b)))})
    for i in range(12):  # one at a time: the breaker sees failures in a row
        assert asyncio.run(send_many(app, key, [chat_body(user=f"u{i}")]))[0].status_code == 200
    assert broken.calls == THRESHOLD
    assert app.gw.router.state("broken") is BreakerState.OPEN


def test_every_replica_busy_is_503_with_retry_after() -> None:
    app, _, key = gateway({"a": Scripted(lambda _: (503, {"error": {"message": "busy"}}))})
    (response,) = asyncio.run(send_many(app, key, [chat_body()]))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_busy"
    assert response.headers["retry-after"] == "1"


class ReadTimeoutAfter(httpx.AsyncBaseTransport):
    """A transport whose answers time out like a socket read after ``read_s``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, read_s: float) -> None:
        self.inner, self.read_s = inner, read_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await asyncio.wait_for(self.inner.handle_async_request(request), self.read_s)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out", request=request) from None


def test_a_timeout_on_a_working_engine_is_504_billed_zero_and_not_an_engine_failure() -> None:
    slow = Scripted(lambda b: (200, plain_answer(b)), delay_s=0.3)
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("slow", base="slow://x", engine="llama.cpp")],
        keys=keys,
        sink=sink,
        transports={"slow": ReadTimeoutAfter(httpx.ASGITransport(app=slow), 0.05)},
    )
    for _ in range(THRESHOLD + 1):
        (response,) = asyncio.run(send_many(app, key, [chat_body()]))
        assert response.status_code == 504
    assert slow.calls == THRESHOLD + 1
    assert app.gw.router.state("slow") is BreakerState.CLOSED
    assert {(r.prompt_tokens, r.completion_tokens) for r in sink.rows.values()} == {(0, 0)}


def test_a_stream_cut_by_the_engine_bills_only_what_was_delivered() -> None:
    events = [sse(chunk({"content": f"t{i} "})) for i in range(5)]  # no finish, no [DONE]
    app, sink, key = gateway({"a": Scripted(lambda _: (200, events))})
    (response,) = asyncio.run(send_many(app, key, [chat_body(stream=True)]))
    assert response.status_code == 200
    assert "error" in events_of(response.text)[-1]  # an error event, then [DONE]
    (row,) = sink.rows.values()
    assert (row.prompt_tokens, row.completion_tokens) == (0, 5)
    assert row.outcome is Outcome.UPSTREAM_ERROR
    finished = [*events, sse(chunk({}, "stop"))]  # finished, no [DONE]: complete
    app, sink, key = gateway({"a": Scripted(lambda _: (200, finished))})
    asyncio.run(send_many(app, key, [chat_body(stream=True)]))
    (row,) = sink.rows.values()
    assert row.outcome is Outcome.OK
    assert row.prompt_tokens > 0


def tool_events(repeat_id_and_name: bool) -> list[bytes]:
    """A tool call streamed in four argument fragments, id and name in the first delta only
    or (like llama-cpp-python) in every one."""
    fragments = ['{"ci', 'ty": "Pa', 'ris"', "}"]
    events = []
    for i, fragment in enumerate(fragments):
        call: dict[str, Any] = {"index": 0, "function": {"arguments": fragment}}
        if i == 0 or repeat_id_and_name:
            call.update(id="call_1", type="function")
            call["function"]["name"] = "get_weather"
        events.append(sse(chunk({"tool_calls": [call]})))
    return [*events, sse(chunk({}, "tool_calls")), b"data: [DONE]\n\n"]


@pytest.mark.parametrize("repeat", [False, True])
def test_streamed_tool_calls_follow_openais_delta_rules(repeat: bool) -> None:
    app, sink, key = gateway({"a": Scripted(lambda _: (200, tool_events(repeat)))})
    (response,) = asyncio.run(send_many(app, key, [chat_body(stream=True)]))
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in events_of(response.text)
        if c.get("choices") and c["choices"][0]["delta"].get("tool_calls")
    ]
    assert deltas[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"ci'},
    }
    assert all(
        set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in deltas[1:]
    )
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": "Paris"}'
    (row,) = sink.rows.values()
    assert row.outcome is Outcome.OK
    assert row.completion_tokens == 4  # the engine reported no usage: one per fragment


def test_n_on_an_engine_without_n_is_n_calls_merged_with_usage_summed() -> None:
    def reply(body: dict[str, Any]) -> Reply:
        assert "n" not in body
        return 200, plain_answer(body, completion=7)

    engine = Scripted(reply)
    app, sink, key = gateway({"sim": engine}, engine="mindie")
    (response,) = asyncio.run(send_many(app, key, [chat_body(n=3, max_tokens=8)]))
    answer = response.json()
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 21, "total_tokens": 32}
    assert engine.calls == 3
    (row,) = sink.rows.values()
    assert (row.prompt_tokens, row.completion_tokens) == (11, 21)


def plain_answer(body: dict[str, Any], completion: int = 2) -> dict[str, Any]:
    message = {"role": "assistant", "content": "hi " * completion}
    usage = {"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion}
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {
        "id": "x",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [choice],
        "usage": usage,
    }


def events_of(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[5:])
        for line in text.splitlines()
        if line.startswith("data:") and line.strip() != "data: [DONE]"
    ]


def test_usage_reported_once_per_choice_is_summed_with_the_prompt_once() -> None:
    def reply(body: dict[str, Any]) -> Reply:
        events = [sse(chunk({"content": "a"}, "stop", index=i)) for i in range(3)]
        usage = {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}
        per_choice = [sse({"id": "c", "choices": [], "usage": usage}) for _ in range(3)]
        return 200, [*events, *per_choice, b"data: [DONE]\n\n"]

    app, sink, key = gateway({"a": Scripted(reply)})
    body = chat_body(n=3, stream=True, max_tokens=4, stream_options={"include_usage": True})
    (response,) = asyncio.run(send_many(app, key, [body]))
    assert events_of(response.text)[-1]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "total_tokens": 14,
    }
    (row,) = sink.rows.values()
    assert (row.prompt_tokens, row.completion_tokens) == (11, 3)


def test_replicas_whose_engine_would_refuse_are_left_out_and_all_refusing_is_a_400() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    able, unable = Scripted(lambda b: (200, plain_answer(b))), Scripted(lambda b: (200, {}))
    replicas = [
        replica("able", base="able://x", engine="vllm"),
        replica("unable", base="unable://x", engine="mindie"),
    ]
    transports = {n: httpx.ASGITransport(app=a) for n, a in (("able", able), ("unable", unable))}
    app = make_gateway(replicas, keys=keys, sink=sink, transports=transports)
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    bodies = [chat_body(user=f"u{i}", response_format=fmt) for i in range(8)]
    assert {r.status_code for r in asyncio.run(send_many(app, key, bodies))} == {200}
    assert (able.calls, unable.calls) == (8, 0)
    app = make_gateway(replicas[1:], keys=keys, sink=sink, transports=transports)
    (response,) = asyncio.run(send_many(app, key, [chat_body(response_format=fmt)]))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format"
    assert response.json()["error"]["code"] == "unsupported_parameter"
    assert unable.calls == 0


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}


@pytest.mark.parametrize("stream", [False, True])
def test_tools_through_a_grammar_come_back_as_openai_tool_calls(stream: bool) -> None:
    sent: list[dict[str, Any]] = []
    content = '{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}'

    def reply(body: dict[str, Any]) -> Reply:
        sent.append(body)
        if not body.get("stream"):
            return 200, {
                **plain_answer(body),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        pieces = [content[i : i + 9] for i in range(0, len(content), 9)]
        events = [sse(chunk({"content": p})) for p in pieces]
        return 200, [*events, sse(chunk({}, "stop")), b"data: [DONE]\n\n"]

    app, sink, key = gateway({"a": Scripted(reply)})
    body = chat_body(stream=stream, tools=[WEATHER_TOOL], tool_choice="required")
    (response,) = asyncio.run(send_many(app, key, [body]))
    assert "tools" not in sent[0]
    assert sent[0]["response_format"]["type"] == "json_schema"
    if stream:
        deltas = [c["choices"][0] for c in events_of(response.text) if c.get("choices")]
        call = deltas[0]["delta"]["tool_calls"][0]
        finish = deltas[-1]["finish_reason"]
        assert content not in response.text  # the raw JSON never reaches the client
    else:
        choice = response.json()["choices"][0]
        call, finish = choice["message"]["tool_calls"][0], choice["finish_reason"]
        assert choice["message"]["content"] is None
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert finish == "tool_calls"
    (row,) = sink.rows.values()
    assert row.outcome is Outcome.OK
