"""Forwarding one validated call to an engine: failover, then a plain or streamed answer.

Failover: connect errors, protocol errors before a response, and 5xx answers eject the
replica and retry on another one (at most ``max_attempts`` replicas); a timeout waiting for
the first byte is NOT retried (the engine may be working on it) and answers 504.

Streams are forwarded as they arrive: the events of each read from the engine go to the
client in one send (:mod:`.sse` counts their tokens by bytes). Usage fields are stripped
from forwarded chunks; the gateway bills its trusted usage
(:func:`~.metering.trusted_usage`), records it, then — if the client asked with
``stream_options.include_usage`` — sends it as the last chunk before ``[DONE]``.

If the client disconnects before its answer is complete (a stream mid-way, or a
non-streamed answer before the engine's answer was read), the engine request is cancelled
(its connection closed) and the client is billed its prompt plus every completion token
received from the engine so far (at least what was delivered, never zero for delivered
tokens; nothing for a non-streamed answer), as ``client_disconnect`` (499).
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from suanwang.domain.usage import Outcome
from suanwang.gateway.asgi import DisconnectWatch, Receive, Send, send_bytes, start_stream
from suanwang.gateway.errors import GatewayError
from suanwang.gateway.metering import RequestMeter, estimate_tokens, trusted_usage
from suanwang.gateway.metrics import GatewayMetrics
from suanwang.gateway.routing import Router, Slot
from suanwang.gateway.schema import Call
from suanwang.gateway.sse import SseLines, content_tokens
from suanwang.gateway.upstream import RETRYABLE, UpstreamResponse, Upstreams, finish


class StreamEnd(enum.Enum):
    COMPLETE = (200, Outcome.OK)
    UPSTREAM_ERROR = (502, Outcome.UPSTREAM_ERROR)
    TIMEOUT = (504, Outcome.TIMEOUT)
    DISCONNECT = (499, Outcome.CLIENT_DISCONNECT)


@dataclass(slots=True)
class Tally:
    """What the gateway saw of a streamed answer."""

    chunks: int = 0
    """Content tokens received (one per choice with content in a chunk)."""
    usage: Any = None
    last: bytes = b""
    """The JSON of the last chunk."""
    held: bytes = b""
    """Events received with the end of the stream, not forwarded yet."""


class Proxy:
    """Sends calls to replicas chosen by the router."""

    def __init__(
        self,
        router: Router,
        upstreams: Upstreams,
        max_attempts: int,
        max_request_s: float,
        metrics: GatewayMetrics,
    ) -> None:
        self._router = router
        self._metrics = metrics
        self._upstreams = upstreams
        self._max_attempts = max_attempts
        self._max_request_s = max_request_s

    @asynccontextmanager
    async def _opened(
        self, call: Call, slots: list[Slot], meter: RequestMeter
    ) -> AsyncIterator[tuple[UpstreamResponse, Slot]]:
        """A response (headers read) from the first replica that answers without a 5xx.

        The replica holds the request in flight (its router lease) and the response stays
        open until the block ends.
        """
        payload = json.dumps(call.body).encode()
        headers = {"content-type": "application/json", "x-request-id": meter.request_id}
        tried: set[str] = set()
        for _ in range(self._max_attempts):
            slot = self._router.pick(slots, call.affinity, tried)
            if slot is None:
                break
            if tried:
                self._metrics.failover(call.model)
            tried.add(slot.replica.replica_id)
            with self._router.lease(slot):
                response = await self._post(slot, call, payload, headers)
                if response is None:
                    continue
                meter.routed(slot.replica)
                self._router.succeeded(slot)
                try:
                    yield response, slot
                finally:
                    await response.aclose()
                return
        raise GatewayError(
            503, f"no replica of {call.model!r} is answering; retry shortly", code="no_replica"
        )

    async def _post(
        self, slot: Slot, call: Call, payload: bytes, headers: dict[str, str]
    ) -> UpstreamResponse | None:
        """The replica's response, or None once it failed and was ejected (try another)."""
        try:
            response = await self._upstreams.post(slot.replica, call.endpoint, payload, headers)
        except RETRYABLE as exc:
            self._eject(slot, call.model, type(exc).__name__)
            return None
        except httpx.TimeoutException as exc:
            self._metrics.upstream_error(call.model, "timeout")
            raise GatewayError(504, "the engine did not answer in time", code="timeout") from exc
        if response.status_code >= 500:
            await response.aclose()
            self._eject(slot, call.model, f"HTTP {response.status_code}")
            return None
        return response

    def _eject(self, slot: Slot, model: str, reason: str) -> None:
        self._router.eject(slot, reason)
        self._metrics.upstream_error(model, reason)
        self._metrics.ejected(model, slot.replica.replica_id)

    async def own_prompt(self, slot: Slot, call: Call) -> int:
        counted = await self._upstreams.count_prompt(slot.replica, call)
        return counted if counted is not None else estimate_tokens(call.prompt_text)

    async def plain(
        self, call: Call, slots: list[Slot], meter: RequestMeter, io: tuple[Receive, Send, str]
    ) -> None:
        """Get a non-streamed answer, bill it, then send it (see the module docstring for a
        client that leaves first)."""
        receive, send, client_id = io
        async with DisconnectWatch(receive) as watch, self._opened(call, slots, meter) as opened:
            response, slot = opened
            body = await _read_all(response)
        if watch.gone:
            prompt = await self.own_prompt(slots[0], call)
            await meter.close(499, Outcome.CLIENT_DISCONNECT, prompt, 0)
            return
        if response.status_code >= 400:
            raise _engine_error(response.status_code, body)
        try:
            answer = json.loads(body)
        except ValueError as exc:
            raise GatewayError(502, "the engine answered non-JSON", code="upstream_error") from exc
        usage = answer.get("usage") if isinstance(answer, dict) else None
        counted = _content_tokens(answer) if call.max_completion else 0
        own = await self.own_prompt(slot, call) if not _has_prompt(usage, call) else 0
        prompt, completion = trusted_usage(usage, call, counted, own)
        await meter.close(200, Outcome.OK, prompt, completion)
        await send_bytes(send, 200, body, client_id, None)

    async def stream(
        self, call: Call, slots: list[Slot], meter: RequestMeter, io: tuple[Receive, Send, str]
    ) -> None:
        """Forward a streamed answer, bill it, then finish it (see the module docstring)."""
        async with self._opened(call, slots, meter) as (response, slot):
            await self._stream(call, response, slot, meter, io)

    async def _stream(
        self,
        call: Call,
        response: UpstreamResponse,
        slot: Slot,
        meter: RequestMeter,
        io: tuple[Receive, Send, str],
    ) -> None:
        receive, send, client_id = io
        if response.status_code >= 400:
            raise _engine_error(response.status_code, await response.aread())
        meter.streamed = True
        await start_stream(send, client_id)
        tally = Tally()
        end = await self._pump_until_disconnect(response, receive, send, tally)
        if end is not StreamEnd.COMPLETE:
            await response.aclose()  # cancels the engine's work
        own = await self.own_prompt(slot, call) if not _has_prompt(tally.usage, call) else 0
        prompt, completion = trusted_usage(
            tally.usage if end is StreamEnd.COMPLETE else None, call, tally.chunks, own
        )
        status, outcome = end.value
        if end in (StreamEnd.UPSTREAM_ERROR, StreamEnd.TIMEOUT):
            self._metrics.upstream_error(call.model, f"mid-stream {end.name.lower()}")
        await meter.close(status, outcome, prompt, completion)
        if end is StreamEnd.DISCONNECT:
            return
        tail = tally.held
        if end is not StreamEnd.COMPLETE:
            error = {"message": "the engine failed mid-stream", "type": "upstream_error"}
            tail += b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
        elif call.include_usage:
            tail += _usage_chunk(tally.last, prompt, completion)
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        if end is StreamEnd.COMPLETE:
            await finish(response)  # after the answer: keeps the engine connection

    async def _pump_until_disconnect(
        self, response: UpstreamResponse, receive: Receive, send: Send, tally: Tally
    ) -> StreamEnd:
        """Pump in this task until the end of the stream or of the client."""
        async with DisconnectWatch(receive):
            return await self._pump(response, send, tally)
        return StreamEnd.DISCONNECT

    async def _pump(self, response: UpstreamResponse, send: Send, tally: Tally) -> StreamEnd:
        """Forward the engine's events as they arrive: one send per read, not per event."""
        deadline = time.monotonic() + self._max_request_s
        lines = SseLines()
        try:
            async for piece in response.aiter_bytes():
                out, end = _forward(lines.feed(piece), tally)
                if end is not None:
                    tally.held = out  # sent with the tail, after billing: one write less
                    return end
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                if time.monotonic() > deadline:
                    return StreamEnd.TIMEOUT
        except httpx.TimeoutException:
            return StreamEnd.TIMEOUT
        except httpx.HTTPError:
            return StreamEnd.UPSTREAM_ERROR
        tally.held, end = _forward(lines.rest(), tally)
        return end or (StreamEnd.COMPLETE if tally.last else StreamEnd.UPSTREAM_ERROR)


async def _read_all(response: UpstreamResponse) -> bytes:
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise GatewayError(504, "the engine did not finish in time", code="timeout") from exc
    except httpx.HTTPError as exc:
        raise GatewayError(502, "the engine failed mid-answer", code="upstream_error") from exc


def _forward(lines: list[bytes], tally: Tally) -> tuple[bytes, StreamEnd | None]:
    """The events of ``lines`` to forward, and how the stream ended if it did."""
    parts: list[bytes] = []
    end = None
    for line in lines:
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            end = StreamEnd.COMPLETE
            break
        try:
            out = _account(data, tally)
        except ValueError:
            out = None
        if out is None:
            end = StreamEnd.UPSTREAM_ERROR
            break
        if out:
            parts += (b"data: ", out, b"\n\n")
    return b"".join(parts), end


def _account(data: bytes, tally: Tally) -> bytes | None:
    """Count a chunk's content tokens, keep its usage; the JSON to forward (b"" for none).

    None for an error chunk; ValueError for one that is not JSON.
    """
    tokens = content_tokens(data)
    if tokens is not None:
        tally.chunks += tokens
        tally.last = data
        return data
    chunk = json.loads(data)
    if not isinstance(chunk, dict) or "error" in chunk:
        return None
    choices = chunk.get("choices") or []
    for choice in choices:
        if isinstance(choice, dict):
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if text:
                tally.chunks += 1
    tally.last = data
    if chunk.get("usage") is None:
        return data
    tally.usage = chunk["usage"]
    if not choices:
        return b""
    return json.dumps({**chunk, "usage": None}).encode()


def _usage_chunk(last: bytes, prompt: int, completion: int) -> bytes:
    try:
        fields = json.loads(last)
    except ValueError:
        fields = {}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    chunk: dict[str, Any] = {
        k: v for k, v in fields.items() if k in ("id", "object", "created", "model")
    }
    chunk["choices"] = []
    chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _has_prompt(usage: Any, call: Call) -> bool:
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return type(prompt) is int and 0 < prompt <= call.prompt_bound


def _content_tokens(answer: Any) -> int:
    if not isinstance(answer, dict):
        return 0
    texts: list[str] = []
    for choice in answer.get("choices") or []:
        if isinstance(choice, dict):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            if isinstance(text, str):
                texts.append(text)
    return estimate_tokens("".join(texts)) if texts else 0


def _engine_error(status: int, body: bytes) -> GatewayError:
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace")
    return GatewayError(status, f"the engine refused the request: {message}", code="engine_error")
