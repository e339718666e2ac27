"""Streamed chat on llama.cpp is billed the prompt tokens the engine counts unstreamed: the
chat template applied (engines/llama.py ``/extras/chat/tokenize/count``), not the raw text."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway_support import FakeKeys, MemorySink, chat_body, client_for, make_gateway, replica
from suanwang.engines.llama import chat_prompt_tokens

TEMPLATE = "<|im_start|>system\nbe nice<|im_end|>\n{turns}<|im_start|>assistant\n"


def render(messages: list[dict[str, str]]) -> str:
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return TEMPLATE.format(turns=turns)


def tokens(text: str) -> int:
    """The fake engine's tokenizer: special markers and words are one token each."""
    return len(text.replace("<|", " <|").replace("|>", "|> ").split())


class FakeLlamaCpp:
    """A llama.cpp-like engine: usage only unstreamed; raw and chat token counting."""

    def __init__(self, chat_route: bool = True) -> None:
        self.chat_route = chat_route

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = json.loads((await receive())["body"] or b"{}")
        path = scope["path"]
        if path == "/extras/chat/tokenize/count" and self.chat_route:
            await self._json(send, {"count": tokens(render(body["messages"]))})
        elif path == "/extras/tokenize/count":
            await self._json(send, {"count": tokens(body["input"])})
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
            await self._json(send, {"detail": "Not Found"}, 404)

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


@pytest.mark.parametrize("chat_route", [True, False], ids=["chat-count", "old-engine"])
def test_streamed_prompt_tokens_equal_the_unstreamed_usage(chat_route: bool) -> None:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        [replica("r1", base="llama://x", engine="llama.cpp")],
        keys=keys,
        sink=sink,
        transports={"llama": httpx.ASGITransport(app=FakeLlamaCpp(chat_route))},
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
    if chat_route:
        assert streamed.prompt_tokens == templated
    else:  # an engine without the route: the raw text's count, short of the template
        assert streamed.prompt_tokens == tokens("what is the capital of France") < templated


class FakeLlama:
    """What chat_prompt_tokens needs of a ``llama_cpp.Llama``."""

    def __init__(self) -> None:
        self.chat_format = "fake"
        self._chat_handlers = {"fake": self.handler}
        self.chat_handler = None
        self.generated = False

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [0] * (tokens(text.decode()) + (1 if add_bos else 0))

    def create_completion(self, **_: Any) -> None:
        self.generated = True

    @staticmethod
    def handler(*, llama: Any, messages: list[dict[str, str]], **_: Any) -> None:
        prompt = llama.tokenize(render(messages).encode(), add_bos=False, special=True)
        llama.create_completion(prompt=prompt)


def test_chat_prompt_tokens_stops_at_the_prompt() -> None:
    llama = FakeLlama()
    messages = [{"role": "user", "content": "hello there"}]
    assert chat_prompt_tokens(llama, {"messages": messages}) == tokens(render(messages))
    assert not llama.generated  # counting never runs the model
