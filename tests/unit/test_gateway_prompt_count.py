"""A streamed chat on llama.cpp that ends without the engine's usage is billed the prompt
tokens the engine counts unstreamed: the chat template applied (llama-server's
``/apply-template``, then ``/tokenize``), not the raw text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway_support import FakeKeys, MemorySink, chat_body, client_for, make_gateway, replica
from suanwang.gateway.metering import estimate_tokens

TEMPLATE = "<|im_start|>system\nbe nice<|im_end|>\n{turns}<|im_start|>assistant\n"


def render(messages: list[dict[str, str]]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return TEMPLATE.format(turns=turns)


def tokens(text: str) -> int:
    """The fake engine's tokenizer: special markers and words are one token each."""
    return len(text.replace("<|", " <|").replace("|>", "|> ").split())


class FakeLlamaServer:
    """A llama-server-like engine: usage only unstreamed; its template and tokenizer routes
    (``routes``: which of ``/apply-template`` and ``/tokenize`` it serves)."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.routes = routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = json.loads((await receive())["body"] or b"{}")
        path = scope["path"]
        if path == "/apply-template" and path in self.routes:
            await self._json(send, {"prompt": render(body["messages"])})
        elif path == "/tokenize" and path in self.routes:
            assert body["add_special"] is True  # as a completion tokenizes its prompt
            await self._json(send, {"tokens": list(range(tokens(body["content"])))})
        elif path == "/v1/chat/completions" and body.get("stream"):
            await self._stream(send)
        elif path == "/v1/chat/completions":
            prompt = tokens(render(body["messages"]))
            usage = {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3}
            message = {"role": "assistant", "content": "a b c"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            await self._json(
                send,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [choice],
                    "usage": usage,
                },
            )
        else:
            await self._json(send, {"error": {"code": 404, "message": "File Not Found"}}, 404)

    async def _json(self, send: Any, payload: Any, status: int = 200) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _stream(self, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for word in ("a", "b", "c"):
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": word}}],
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


BOTH = ("/apply-template", "/tokenize")


@pytest.mark.parametrize(
    "routes", [BOTH, ("/tokenize",), ()], ids=["llama-server", "no-template", "no-tokenizer"]
)
def test_streamed_prompt_tokens_equal_the_unstreamed_usage(routes: tuple[str, ...]) -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("r1", base="llama://x", engine="llama.cpp")],
        keys=keys,
        sink=sink,
        transports={"llama": httpx.ASGITransport(app=FakeLlamaServer(routes))},
    )
    body = chat_body("what is the capital of France", max_tokens=10)

    async def go() -> None:
        async with client_for(app) as client:
            auth = {"authorization": f"Bearer {key}"}
            for stream in (False, True):
                r = await client.post(
                    "/v1/chat/completions", json={**body, "stream": stream}, headers=auth
                )
                assert r.status_code == 200

    asyncio.run(go())
    plain, streamed = sorted(sink.rows.values(), key=lambda r: r.streamed)
    templated = tokens(render(body["messages"]))
    assert plain.prompt_tokens == templated
    if routes == BOTH:
        assert streamed.prompt_tokens == templated
    elif routes:  # no template route: the raw text's count, short of the template
        assert streamed.prompt_tokens == tokens("what is the capital of France") < templated
    else:  # nothing to count with: the gateway's estimate (about 4 bytes a token)
        assert streamed.prompt_tokens == estimate_tokens("what is the capital of France")


def test_the_prompt_counted_is_the_translated_one_the_engine_read() -> None:
    """Tools through the grammar put a system message before the conversation: a streamed
    answer without usage is billed the prompt of that body, as the same request unstreamed."""
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("r1", base="llama://x", engine="llama.cpp")],
        keys=keys,
        sink=sink,
        transports={"llama": httpx.ASGITransport(app=FakeLlamaServer(BOTH))},
    )
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    body = chat_body("weather in Paris?", max_tokens=10, tools=[tool], tool_choice="required")

    async def go() -> None:
        async with client_for(app) as client:
            auth = {"authorization": f"Bearer {key}"}
            for stream in (False, True):
                r = await client.post(
                    "/v1/chat/completions", json={**body, "stream": stream}, headers=auth
                )
                assert r.status_code == 200

    asyncio.run(go())
    plain, streamed = sorted(sink.rows.values(), key=lambda r: r.streamed)
    assert streamed.prompt_tokens == plain.prompt_tokens > tokens(render(body["messages"]))
