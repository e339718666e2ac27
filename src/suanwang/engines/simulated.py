"""An ASGI app that emulates an OpenAI-compatible engine for replicas on simulated clusters.

The gateway reaches ``sim://<replica-id>`` through ``httpx.ASGITransport(app=...)``; the
request's Host is the replica id. Answers are deterministic filler text, paced per token
from the chip's catalogue figures and the model's size:

- decode: ``cards × fp16_tflops × DECODE_EFFICIENCY / (2 × params)`` tokens/s, clamped to
  ``[MIN_TPS, MAX_TPS]`` (one stream is memory-bound, far below the chip's peak);
- time to first token: ``BASE_TTFT_S`` plus the prompt's FLOPs at ``PREFILL_EFFICIENCY``.

``pace`` scales every delay (0 in tests and benchmarks). Streaming sends one chunk per
token and a usage chunk when ``stream_options.include_usage`` is true. Embeddings are
unit vectors of :data:`EMBED_DIMS` floats, derived from a hash of the input.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from suanwang.domain.chips import Catalogue
from suanwang.domain.serving import ModelKind, ModelSpec

DECODE_EFFICIENCY = 0.005
PREFILL_EFFICIENCY = 0.3
MIN_TPS, MAX_TPS = 5.0, 200.0
BASE_TTFT_S = 0.05
DEFAULT_MAX_TOKENS = 32
EMBED_DIMS = 384
_WORDS = ("this", "is", "a", "simulated", "answer", "from", "a", "replica", "on")  # fmt: skip


def tokens_per_s(model: ModelSpec, tflops: float, cards: int) -> float:
    """Single-stream decode speed of ``model`` on ``cards`` cards of ``tflops`` FP16."""
    raw = cards * tflops * 1e12 * DECODE_EFFICIENCY / (2 * model.params_b * 1e9)
    return min(MAX_TPS, max(MIN_TPS, raw))


def ttft_s(model: ModelSpec, tflops: float, cards: int, prompt_tokens: int) -> float:
    """Time to first token: a fixed overhead plus the prompt's prefill FLOPs."""
    flops = 2 * model.params_b * 1e9 * prompt_tokens
    return BASE_TTFT_S + flops / max(1.0, cards * tflops * 1e12 * PREFILL_EFFICIENCY)


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: about four characters a token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def create_app(
    models: Mapping[str, ModelSpec],
    catalogue: Catalogue,
    chip_of: Callable[[str], str] | None = None,
    pace: float = 1.0,
) -> Starlette:
    """The simulated engine; ``chip_of(replica_id)`` names a replica's chip (else the
    model's first catalogue chip)."""

    def speed(request: Request, model: ModelSpec) -> tuple[float, float]:
        replica = request.headers.get("host", "").split(":")[0]
        chip = (chip_of(replica) if chip_of else "") or model.chips[0]
        tflops = catalogue.chips[chip].fp16_tflops if chip in catalogue.chips else 1.0  # type: ignore[index]
        return tflops, float(model.cards)

    async def list_models(_request: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": "suanwang-simulated"} for m in models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        body, model = await _body_and_model(request, models, ModelKind.CHAT)
        if isinstance(body, Response):
            return body
        prompt = count_tokens(json.dumps(body.get("messages", [])))
        wanted = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        n = max(1, min(int(wanted), DEFAULT_MAX_TOKENS * 8))
        tflops, cards = speed(request, model)
        delays = (
            ttft_s(model, tflops, int(cards), prompt) * pace,
            pace / tokens_per_s(model, tflops, int(cards)),
        )
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        created, ident = (
            int(time.time()),
            f"chatcmpl-sim-{hashlib.sha1(json.dumps(body).encode()).hexdigest()[:12]}",
        )
        meta = {"id": ident, "created": created, "model": model.name}
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            stream = _stream(meta, n, delays, usage if include else None)
            return StreamingResponse(stream, media_type="text/event-stream")
        await asyncio.sleep(delays[0] + delays[1] * n)
        message = {"role": "assistant", "content": _text(n)}
        choice = {"index": 0, "message": message, "finish_reason": "length"}
        return JSONResponse(
            {**meta, "object": "chat.completion", "choices": [choice], "usage": usage}
        )

    async def embeddings(request: Request) -> Response:
        body, model = await _body_and_model(request, models, ModelKind.EMBEDDING)
        if isinstance(body, Response):
            return body
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        if not inputs or not all(isinstance(i, str) for i in inputs):
            return _error(400, "input must be a string or a list of strings")
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(t)}
            for i, t in enumerate(inputs)
        ]
        tokens = sum(count_tokens(t) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "model": model.name, "data": data, "usage": usage})

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "simulated": True})

    return Starlette(
        routes=[
            Route("/v1/models", list_models),
            Route("/health", health),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


async def _body_and_model(
    request: Request, models: Mapping[str, ModelSpec], kind: ModelKind
) -> tuple[dict[str, Any] | Response, ModelSpec]:
    fallback = next(iter(models.values()))
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON"), fallback
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object"), fallback
    model = models.get(str(body.get("model", "")))
    if model is None or model.kind is not kind:
        return _error(404, f"model {body.get('model')!r} is not served here"), fallback
    return body, model


async def _stream(
    meta: dict[str, Any], n: int, delays: tuple[float, float], usage: dict[str, int] | None
) -> AsyncIterator[bytes]:
    await asyncio.sleep(delays[0])
    base = {**meta, "object": "chat.completion.chunk"}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _sse({**base, "choices": [first]})
    for i in range(n):
        await asyncio.sleep(delays[1])
        delta = {"content": (" " if i else "") + _WORDS[i % len(_WORDS)]}
        finish = "length" if i == n - 1 else None
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    if usage is not None:
        yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _text(n: int) -> str:
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(n))


def _vector(text: str) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] ^ (i * 131)) % 251) / 125.0 - 1.0 for i in range(EMBED_DIMS)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status == 400 else "not_found_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status)
