"""A fast mock OpenAI-compatible engine (raw ASGI), for gateway tests and benchmarks.

Run: ``python benchmarks/mock_openai.py --port 9100 [--no-stream-usage] [--fail-status 500]
[--require-key KEY]``. With ``--require-key`` (a partner's API) every route but ``/health``
answers 401 unless the request carries ``Authorization: Bearer KEY``.

Behaviour per request comes from an extra body field ``mock`` (the gateway forwards unknown
fields): ``{"chunks": 8, "usage": "normal"|"none"|"zero"|"negative"|"huge",
"fail_after": k, "delay_ms": d, "status": 500}``. ``chunks`` content tokens are produced
(capped by ``max_tokens``), one per stream chunk, as llama.cpp does. Reported prompt tokens
are ``ceil(bytes / 4)`` of the message contents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from typing import Any

Scope = dict[str, Any]


def prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
    elif "prompt" in body:
        text = str(body["prompt"])
    else:
        items = body.get("input")
        text = "\n".join(items) if isinstance(items, list) else str(items)
    return max(1, math.ceil(len(text.encode()) / 4))


def usage_of(mode: str, prompt: int, completion: int) -> dict[str, int] | None:
    if mode == "none":
        return None
    if mode == "zero":
        prompt = completion = 0
    elif mode == "negative":
        prompt, completion = -5, -7
    elif mode == "huge":
        completion = 10**9
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


class MockEngine:
    def __init__(
        self, stream_usage: bool = True, fail_status: int = 0, require_key: str | None = None
    ) -> None:
        self.stream_usage = stream_usage
        self.fail_status = fail_status
        self.auth = f"Bearer {require_key}".encode() if require_key else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if (
            self.auth
            and path != "/health"
            and dict(scope["headers"]).get(b"authorization") != (self.auth)
        ):
            error = {"message": "invalid API key", "type": "invalid_request_error", "code": 401}
            await self._json(send, 401, {"error": error})
            return
        if path in ("/health", "/v1/models"):
            await self._json(send, 200, {"status": "ok", "object": "list", "data": []})
            return
        if self.fail_status:
            await self._json(send, self.fail_status, {"error": {"message": "mock failure"}})
            return
        body = json.loads(raw or b"{}")
        mock = body.get("mock") or {}
        if mock.get("status"):
            await self._json(send, int(mock["status"]), {"error": {"message": "mock status"}})
            return
        if mock.get("delay_ms"):
            await asyncio.sleep(mock["delay_ms"] / 1000)
        if path == "/v1/embeddings":
            await self._embeddings(send, body)
        elif body.get("stream"):
            await self._stream(send, body, mock, path.endswith("chat/completions"))
        else:
            await self._plain(send, body, mock, path.endswith("chat/completions"))

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _embeddings(self, send: Any, body: dict[str, Any]) -> None:
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}
            for i in range(len(items))
        ]
        p = prompt_tokens(body)
        usage = {"prompt_tokens": p, "total_tokens": p}
        await self._json(
            send, 200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def _plain(self, send: Any, body: dict[str, Any], mock: Any, chat: bool) -> None:
        n = min(int(mock.get("chunks", 8)), int(body.get("max_tokens") or 16))
        text = "".join(f"t{i} " for i in range(n))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        answer = {
            "id": "cmpl-mock",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
            "usage": usage_of(mock.get("usage", "normal"), prompt_tokens(body), n),
        }
        await self._json(send, 200, answer)

    async def _stream(self, send: Any, body: dict[str, Any], mock: Any, chat: bool) -> None:
        n = min(int(mock.get("chunks", 8)), int(body.get("max_tokens") or 16))
        fail_after = mock.get("fail_after")
        gap = float(mock.get("gap_ms", 0)) / 1000
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        base = {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        for i in range(n):
            if fail_after is not None and i >= int(fail_after):
                return  # connection closes without [DONE]: an upstream error mid-stream
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {"content": f"t{i} "}
            else:
                choice["text"] = f"t{i} "
            event = {**base, "choices": [choice]}
            await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
            if gap:
                await asyncio.sleep(gap)
        wants = (body.get("stream_options") or {}).get("include_usage")
        usage = usage_of(mock.get("usage", "normal"), prompt_tokens(body), n)
        if self.stream_usage and wants and usage is not None:
            event = {**base, "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": _sse(event), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-stream-usage", action="store_true", help="like llama.cpp")
    parser.add_argument("--fail-status", type=int, default=0)
    parser.add_argument("--require-key", default=None, help="the bearer key callers must send")
    args = parser.parse_args()
    app = MockEngine(not args.no_stream_usage, args.fail_status, args.require_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
