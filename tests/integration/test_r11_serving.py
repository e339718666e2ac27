"""Suite R11, serving under concurrency: the real engine (SmolLM2 on llama-server) through
the gateway, on the session's live stack (fixture ``live_engines``).

- 20 concurrent streamed chats all complete: content, ``finish_reason``, one usage chunk
  (``include_usage``) equal to what the ledger billed, the prompt as the engine counts it;
  and they are served at the same time (their lifetimes overlap), not one after another;
- a plain request arriving while a stream runs does not cut that stream, and is answered
  before the stream ends.

Both fail on the engine used before (llama-cpp-python's server: one request at a time, the
running one interrupted by the next). Checked with local replicas launching
benchmarks/llama_cpp_python_server.py instead (n_ctx 4096, 1 thread): "a stream came back
without content" and "the stream was cut" (no ``finish_reason``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from live_engines import CHAT, LiveEngines

from suanwang.config import Settings

STREAMS = 20
MAX_TOKENS = 32
TIMEOUT_S = 180.0


@dataclass
class Streamed:
    """One streamed answer as the client saw it (times from ``time.monotonic``)."""

    status: int = 0
    text: str = ""
    content_chunks: int = 0
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    first_token_at: float = 0.0
    ended_at: float = 0.0
    done: bool = False
    seen: list[float] = field(default_factory=list)


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    out: Streamed | None = None,
) -> Streamed:
    """Stream one chat through the gateway; ``out`` (if given) fills in as chunks arrive."""
    body = {
        "model": CHAT,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = out or Streamed()
    headers = {"authorization": f"Bearer {key}"}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        out.status = response.status_code
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                out.done = True
            elif line.startswith("data: {"):
                _take(out, json.loads(line[6:]))
    out.ended_at = time.monotonic()
    return out


def _take(out: Streamed, chunk: dict[str, Any]) -> None:
    if chunk.get("usage"):
        out.usage = chunk["usage"]
    for choice in chunk.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            out.content_chunks += 1
            out.text += content
            out.seen.append(time.monotonic())
            out.first_token_at = out.first_token_at or out.seen[-1]
        out.finish_reason = choice.get("finish_reason") or out.finish_reason


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = open_now = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak


def engine_prompt_tokens(engine: str, messages: list[dict[str, str]]) -> int:
    """The prompt tokens of ``messages`` as llama-server counts them (template applied)."""
    prompt = httpx.post(f"{engine}/apply-template", json={"messages": messages}, timeout=30)
    tokens = httpx.post(
        f"{engine}/tokenize", json={"content": prompt.json()["prompt"], "add_special": True}
    )
    return len(tokens.json()["tokens"])


def test_20_concurrent_streams_complete_with_usage_and_overlap(live_engines: LiveEngines) -> None:
    tenant = "r11-concurrent"
    key = live_engines.tenant(tenant)
    url = live_engines.gateway_url + "/chat/completions"
    conversations = [
        [{"role": "user", "content": f"Write a long story about a cat named Tom number {i}."}]
        for i in range(STREAMS)
    ]

    async def run() -> list[Streamed]:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(timeout=TIMEOUT_S, limits=limits) as client:
            return await asyncio.gather(
                *(stream_chat(client, url, key, m, MAX_TOKENS) for m in conversations)
            )

    results = asyncio.run(run())
    engine = live_engines.engine_url()
    for messages, got in zip(conversations, results, strict=True):
        assert got.status == 200
        assert got.done
        assert got.text.strip(), "a stream came back without content"
        assert got.finish_reason in ("stop", "length")
        assert got.usage is not None
        assert got.usage["prompt_tokens"] == engine_prompt_tokens(engine, messages)
        assert got.content_chunks <= got.usage["completion_tokens"] <= MAX_TOKENS
        if got.finish_reason == "length":
            assert got.usage["completion_tokens"] == MAX_TOKENS
    rows = live_engines.ledger(tenant, STREAMS)
    billed = sorted((int(r["prompt_tokens"]), int(r["completion_tokens"])) for r in rows)
    assert len(rows) == STREAMS
    assert billed == sorted(
        (s.usage["prompt_tokens"], s.usage["completion_tokens"]) for s in results if s.usage
    )
    # Served concurrently: as many streams produce tokens at one instant as the engine has
    # slots (at least half of them, allowing for a slow start), and the whole batch takes
    # far less than the streams' lifetimes end to end.
    slots = Settings().llama_slots
    lifetimes = [(s.first_token_at, s.ended_at) for s in results]
    assert peak_overlap(lifetimes) >= min(slots, STREAMS) // 2
    span = max(end for _, end in lifetimes) - min(first for first, _ in lifetimes)
    assert span < sum(end - first for first, end in lifetimes) / 2


def test_a_plain_request_mid_stream_does_not_cut_the_stream(live_engines: LiveEngines) -> None:
    key = live_engines.tenant("r11-mid-stream")
    url = live_engines.gateway_url + "/chat/completions"
    long = [{"role": "user", "content": "Count from 1 to 200, separated by commas."}]
    short = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    stream = Streamed()

    async def run() -> tuple[httpx.Response, float, int]:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            task = asyncio.create_task(stream_chat(client, url, key, long, 96, stream))
            deadline = time.monotonic() + TIMEOUT_S
            while len(stream.seen) < 3 and not task.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            seen = len(stream.seen)
            headers = {"authorization": f"Bearer {key}"}
            plain = await client.post(url, json=short, headers=headers)
            answered_at = time.monotonic()
            await task
            return plain, answered_at, seen

    plain, answered_at, at_plain = asyncio.run(run())
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"]
    assert stream.status == 200
    assert stream.done
    assert stream.finish_reason in ("stop", "length"), "the stream was cut"
    assert stream.usage is not None
    assert stream.usage["completion_tokens"] >= stream.content_chunks > at_plain >= 3
    assert answered_at < stream.ended_at  # answered while the stream still ran
