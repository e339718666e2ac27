"""The streaming hot path: token counting by bytes, chunked decoding, keep-alive after a stream;
clients that leave before their answer is complete."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_support import (
    FakeKeys,
    MemorySink,
    SystemClockForTests,
    chat_body,
    make_gateway,
    replica,
)
from suanwang.domain.limits import Limits, TenantLimits, quota_window
from suanwang.domain.usage import Outcome
from suanwang.gateway import GatewayConfig, InProcessLimiter
from suanwang.gateway.http11 import ChunkedDecoder, Http11Pool
from suanwang.gateway.metering import estimate_tokens
from suanwang.gateway.sse import SseLines, content_tokens


def reference_tokens(chunk: Any) -> int:
    """The rule, read from parsed JSON: choices whose delta.content (or text) is non-empty."""
    count = 0
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict):
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            count += bool(text)
    return count


texts = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=12),
    st.sampled_from(['"content": "x"', '\\"', 'say "error', '{"text":"y"}', "\n\n", "data: "]),
)
deltas = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(texts, st.just([{"type": "text"}]), st.integers()),
        "tool_calls": st.just([{"function": {"arguments": '{"content": "z"}'}}]),
    },
)
choices = st.fixed_dictionaries(
    {"index": st.integers(0, 3)},
    optional={
        "delta": deltas,
        "message": st.fixed_dictionaries({"content": texts}),
        "text": texts,
        "finish_reason": st.sampled_from([None, "stop"]),
        "logprobs": st.sampled_from([None, {"content": [{"token": "a"}]}, {"text_offset": [0]}]),
    },
)
chunks = st.fixed_dictionaries(
    {"id": st.just("c1"), "choices": st.lists(choices, max_size=3)},
    optional={
        "usage": st.sampled_from([None, {"prompt_tokens": 3, "completion_tokens": 2}]),
        "error": st.just({"message": "boom"}),
    },
)


@given(chunks, st.booleans())
def test_bytes_count_agrees_with_json_whenever_it_answers(chunk: Any, compact: bool) -> None:
    data = json.dumps(chunk, separators=(",", ":") if compact else None).encode()
    tokens = content_tokens(data)
    if tokens is not None:
        assert tokens == reference_tokens(chunk)
        assert "error" not in chunk
        assert chunk.get("usage") is None


@pytest.mark.parametrize(
    ("data", "tokens"),
    [  # the shapes engines send all the time are answered without JSON
        (b'{"choices":[{"index":0,"delta":{"content":"t0 "},"finish_reason":null}]}', 1),
        (b'{"choices": [{"index": 0, "delta": {"content": "\\"q\\""}}], "usage": null}', 1),
        (b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}', 0),
        (b'{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}', 0),
        (b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}', 0),
        (b'{"choices":[{"index":0,"text":"t1 ","logprobs":null}]}', 1),
        (b'{"choices":[{"index":0,"delta":{"content":"He said \\"content\\": 2"}}]}', 1),
    ],
)
def test_usual_chunks_take_the_bytes_path(data: bytes, tokens: int) -> None:
    assert content_tokens(data) == tokens


@pytest.mark.parametrize(
    "data",
    [  # usage, errors, several choices, odd values or no object: parsed as JSON instead
        b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}',
        b'{"error":{"message":"boom"}}',
        b'{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}',
        b'{"choices":[{"delta":{"content":["a"]}}]}',
        b'{"choices":[{"message":{"content":"a"}}]}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_unusual_chunks_are_left_to_json(data: bytes) -> None:
    assert content_tokens(data) is None


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=6), st.data())
def test_sse_lines_are_the_same_however_the_body_is_cut(pieces: list[bytes], data: Any) -> None:
    body = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=5)))
    splitter = SseLines()
    lines: list[bytes] = []
    for start, stop in zip([0, *cuts], [*cuts, len(body)], strict=True):
        lines += splitter.feed(body[start:stop])
    lines += splitter.rest()
    expected = body.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert lines == expected


def chunked(payloads: list[bytes], trailer: bytes = b"") -> bytes:
    framed = b"".join(b"%x;ext=1\r\n" % len(p) + p + b"\r\n" for p in payloads if p)
    return framed + b"0\r\n" + trailer + b"\r\n"


@given(
    st.lists(st.binary(min_size=1, max_size=30), max_size=6),
    st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
    st.data(),
)
def test_chunked_decoding_is_the_same_however_the_bytes_arrive(
    payloads: list[bytes], trailer: bytes, data: Any
) -> None:
    wire = chunked(payloads, trailer)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=6)))
    decoder = ChunkedDecoder()
    body = b""
    for start, stop in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        assert not decoder.ended
        body += decoder.feed(wire[start:stop])
    assert decoder.ended
    assert not decoder.extra
    assert body == b"".join(payloads)


def test_chunked_decoding_flags_trailing_bytes_and_rejects_bad_framing() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(chunked([b"abc"]) + b"HTTP/1.1") == b"abc"
    assert decoder.ended
    assert decoder.extra
    for bad in (b"zz\r\nabc\r\n", b"3\r\nabcX\r\n", b"9" * 5000):
        with pytest.raises(ValueError, match=r"base 16|CRLF|too long"):
            ChunkedDecoder().feed(bad)


SSE_EVENTS = [b'data: {"choices":[{"delta":{"content":"t%d "}}]}\n\n' % i for i in range(8)]


async def serve_streams(
    connections: list[asyncio.Task[None]], gap_s: float, repeat: int = 1
) -> asyncio.Server:
    """An engine answering each request with a chunked event stream; it sends the body's
    terminator ``gap_s`` after ``[DONE]`` (llama.cpp writes them separately)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.append(task)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for event in [*SSE_EVENTS * repeat, b"data: [DONE]\n\n"]:
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                if repeat > 1:
                    await asyncio.sleep(0.01)  # a slow engine
            await asyncio.sleep(gap_s)
            writer.write(b"0\r\n\r\n")
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def stream_three_times(gap_s: float, drain_s: float | None) -> tuple[list[bytes], int]:
    connections: list[asyncio.Task[None]] = []
    server = await serve_streams(connections, gap_s)
    port = server.sockets[0].getsockname()[1]
    pool = Http11Pool(1.0, 5.0)
    bodies = []
    try:
        for _ in range(3):
            response = await pool.post(f"http://127.0.0.1:{port}/v1/x", b"{}", {})
            body = b""
            async for piece in response.aiter_bytes():
                body += piece
                if body.endswith(b"[DONE]\n\n"):
                    break  # as the proxy does: stop at the marker
            await (response.aclose() if drain_s is None else response.drain(drain_s))
            bodies.append(body)
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*connections)
    return bodies, len(connections)


@pytest.mark.parametrize(
    ("gap_s", "drain_s", "connections"),
    [
        (0.0, 1.0, 1),
        (0.02, 1.0, 1),  # the terminator comes late: drain waits for it
        (0.02, None, 3),  # closed before its end: the connection cannot be reused
    ],
)
def test_a_stream_read_to_its_end_marker_keeps_its_connection_when_drained(
    gap_s: float, drain_s: float | None, connections: int
) -> None:
    bodies, opened = asyncio.run(stream_three_times(gap_s, drain_s))
    assert bodies == [b"".join(SSE_EVENTS) + b"data: [DONE]\n\n"] * 3
    assert opened == connections


def test_drain_gives_up_on_an_engine_that_keeps_streaming() -> None:
    _, opened = asyncio.run(stream_three_times(0.3, 0.05))
    assert opened == 3


def test_a_client_that_leaves_mid_stream_is_billed_once_as_a_disconnect() -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    raw = json.dumps(chat_body(stream=True, max_tokens=100)).encode()
    sent: list[dict[str, Any]] = []
    started = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": raw, "more_body": False}
        await started.wait()
        await asyncio.sleep(0.1)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        started.set()

    async def scenario() -> None:
        handlers: list[asyncio.Task[None]] = []
        engine = await serve_streams(handlers, 0.0, repeat=10)  # 80 events, 10 ms apart
        port = engine.sockets[0].getsockname()[1]
        app = make_gateway([replica("r1", base=f"http://127.0.0.1:{port}")], keys=keys, sink=sink)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"authorization", f"Bearer {key}".encode())],
        }
        try:
            await asyncio.wait_for(app(scope, receive, send), 5)  # returns, not cancelled
        finally:
            await app.aclose()
            engine.close()
            await engine.wait_closed()
            await asyncio.gather(*handlers)

    asyncio.run(scenario())
    (row,) = sink.rows.values()
    assert (row.status, row.outcome) == (499, Outcome.CLIENT_DISCONNECT)
    delivered = sum(m.get("body", b"").count(b"data: ") for m in sent)
    assert 0 < delivered <= row.completion_tokens < 80
    assert not any(m.get("more_body") is False for m in sent)  # no [DONE] after leaving


ANSWER = json.dumps(
    {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 50}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 50, "total_tokens": 59},
    }
).encode()


async def serve_slowly(delay_s: float, seen: list[str]) -> asyncio.Server:
    """An engine answering a non-streamed chat ``delay_s`` after the request, unless the
    gateway closes the connection first (``seen`` gets "answered" or "cancelled")."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        try:
            await asyncio.wait_for(reader.read(1), delay_s)  # b"" once the gateway hangs up
            seen.append("cancelled")
        except TimeoutError:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
            seen.append("answered")
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_clients_that_leave_before_a_plain_answer_cancel_it_and_pay_their_prompt() -> None:
    """8 clients leave 0.1 s into non-streamed requests to an engine that needs 1.5 s: each
    engine request is cancelled, each row is ``client_disconnect`` (499) billing the prompt
    alone, nothing is sent, the quota keeps only those prompts. A 9th client that stays is
    answered and billed in full."""
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    limits = Limits(tenant=TenantLimits(token_quota=100_000))
    limiter = InProcessLimiter(
        SystemClockForTests(), sink.tokens_used, GatewayConfig().reservation_ttl_s
    )
    raw = json.dumps(chat_body("please write at length", max_tokens=200)).encode()
    seen: list[str] = []

    async def client(app: Any, leave_after_s: float | None) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": raw, "more_body": False}
            if leave_after_s is None:
                await asyncio.Event().wait()  # stays until the app stops listening
            await asyncio.sleep(leave_after_s or 0)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"authorization", f"Bearer {key}".encode())],
        }
        await app(scope, receive, send)
        return sent

    async def scenario() -> tuple[list[list[dict[str, Any]]], float, int]:
        engine = await serve_slowly(1.5, seen)
        port = engine.sockets[0].getsockname()[1]
        app = make_gateway(
            [replica("r1", base=f"http://127.0.0.1:{port}")],
            keys=keys,
            sink=sink,
            limits=limits,
            limiter=limiter,
        )
        began = time.monotonic()
        try:
            leaving = [asyncio.create_task(client(app, 0.1)) for _ in range(8)]
            staying = asyncio.create_task(client(app, None))
            done = await asyncio.wait_for(asyncio.gather(*leaving), 10)
            left_after_s = time.monotonic() - began
            await asyncio.wait_for(staying, 10)
            (slot,) = app.gw.router.visible("smollm2-135m-instruct", "acme")
            return [*done, staying.result()], left_after_s, slot.outstanding
        finally:
            await app.aclose()
            engine.close()
            await engine.wait_closed()

    sent, left_after_s, outstanding = asyncio.run(scenario())
    assert left_after_s < 1.0  # the gateway did not wait for the engine's answer
    assert sorted(seen) == ["answered"] + ["cancelled"] * 8
    assert all(messages == [] for messages in sent[:8])  # nothing sent to a gone client
    assert sent[8][0]["status"] == 200
    rows = sorted(sink.rows.values(), key=lambda row: -row.status)  # the 8 who left first
    prompt = estimate_tokens("please write at length")
    left = [(r.status, r.outcome, r.prompt_tokens, r.completion_tokens) for r in rows[:8]]
    assert left == [(499, Outcome.CLIENT_DISCONNECT, prompt, 0)] * 8
    assert (rows[8].status, rows[8].outcome, rows[8].completion_tokens) == (200, Outcome.OK, 50)
    used = 8 * prompt + rows[8].prompt_tokens + 50
    assert limiter.balance("acme", quota_window(time.time(), limits.tenant)) == (used, 0)
    assert outstanding == 0
