"""Apps on the gateway: ``model="app:<name>[@<version>]"`` on ``/v1/chat/completions``.

Per call: the app is resolved for the calling key (cached for ``ttl_s``); a missing app,
another tenant's, one not shared with this key or an unknown version is the same 404
``model_not_found`` as an unknown model. The last user message is embedded through the
platform's embedding deployment as a request of its own (its own usage row, metered and
billed to the calling key, ``source`` = the app), the app's knowledge bases are searched,
and the call is rewritten: the app's model, its system prompt with a numbered context
block of the chunks, then the caller's messages; the app's ``max_tokens`` caps the
caller's and its ``temperature`` applies unless the caller set one. The rewritten call
goes through the normal path (limits, routing, metering) and carries the ``citations``
the proxy adds to the answer (the last streamed chunk, with the usage, when streaming).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from suanwang.domain.apps import (
    PublishedApp,
    app_messages,
    citations,
    parse_app_model,
    query_of,
)
from suanwang.domain.knowledge import MAX_QUERY_CHARS, Hit
from suanwang.domain.tenancy import Principal
from suanwang.domain.usage import Outcome
from suanwang.gateway.asgi import Message, Receive, Send
from suanwang.gateway.auth import TtlCache
from suanwang.gateway.errors import GatewayError, ending
from suanwang.gateway.metering import RequestMeter
from suanwang.gateway.schema import Call, parse_call
from suanwang.ports import Clock

SubCall = Callable[[Call], Awaitable[Any]]
"""Runs a call through the gateway's normal path as a request of its own; its JSON."""


class AppDirectory(Protocol):
    """Where the gateway finds apps (``services.apps.Apps``; blocking calls)."""

    def resolve(
        self, principal: Principal, name: str, version: int | None
    ) -> PublishedApp | None: ...

    def search(
        self, app: PublishedApp, query: str, vector: Sequence[float] | None
    ) -> list[Hit]: ...


def no_model(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model {model!r} does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


class AppRunner:
    """Turns an app call into the call of its model (see the module docstring)."""

    def __init__(
        self, directory: AppDirectory, clock: Clock, ttl_s: float, default_max_tokens: int
    ) -> None:
        self._directory = directory
        self._cache: TtlCache[tuple[str, str, str, int | None], PublishedApp | None] = TtlCache(
            clock, ttl_s
        )
        self._default_max_tokens = default_max_tokens

    async def prepare(
        self, call: Call, principal: Principal, meter: RequestMeter, embed: SubCall
    ) -> Call:
        wanted = parse_app_model(call.model)
        if wanted is None or call.endpoint != "chat/completions" or principal.tenant_id is None:
            raise no_model(call.model)
        name, version = wanted
        key = (principal.tenant_id, principal.key_id, name, version)
        app = await self._cache.get(
            key, lambda: asyncio.to_thread(self._directory.resolve, principal, name, version)
        )
        if app is None:
            raise no_model(call.model)
        meter.source = app.label
        meter.model = app.settings.model  # a catalogue chat model (checked when saved)
        query = query_of(call.body["messages"])[:MAX_QUERY_CHARS]
        vector = None
        if app.bases and app.embedding_model and query.strip():
            vector = await self._embed(app.embedding_model, query, embed)
        hits = await asyncio.to_thread(self._directory.search, app, query, vector)
        return self._rewritten(call, app, hits)

    async def _embed(self, model: str, query: str, embed: SubCall) -> list[float]:
        body = json.dumps({"model": model, "input": [query], "encoding_format": "float"})
        answer = await embed(parse_call("embeddings", body.encode(), self._default_max_tokens))
        try:
            vector = answer["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError) as exc:
            raise GatewayError(
                502, "the embedding engine answered an unexpected shape", code="upstream_error"
            ) from exc
        if not isinstance(vector, list) or not all(isinstance(v, int | float) for v in vector):
            raise GatewayError(
                502, "the embedding engine answered an unexpected shape", code="upstream_error"
            )
        return [float(v) for v in vector]

    def _rewritten(self, call: Call, app: PublishedApp, hits: list[Hit]) -> Call:
        s = app.settings
        body = dict(call.body)
        body["model"] = s.model
        body["messages"] = app_messages(s.system_prompt, hits, body["messages"])
        if s.max_tokens is not None:
            body["max_tokens"] = min(int(body["max_tokens"]), s.max_tokens)
        if s.temperature is not None:
            body.setdefault("temperature", s.temperature)
        raw = json.dumps(body, ensure_ascii=False).encode()
        rewritten = parse_call("chat/completions", raw, self._default_max_tokens)
        return replace(rewritten, extra={"citations": citations(hits)})


Dispatch = Callable[[Call, RequestMeter, tuple[Receive, Send, str]], Awaitable[None]]


async def sub_request(
    dispatch: Dispatch, call: Call, meter: RequestMeter, io: tuple[Receive, str]
) -> Any:
    """Run ``call`` through ``dispatch`` (the normal path) with ``meter``, capturing the
    answer instead of sending it; its JSON. The meter is closed exactly once."""
    receive, client_id = io
    bodies: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message.get("body", b""))

    billed = (500, Outcome.UPSTREAM_ERROR)  # unless told otherwise: cancelled or crashed
    try:
        await dispatch(call, meter, (receive, capture, client_id))
    except GatewayError as error:
        billed = ending(error)
        raise
    finally:
        if not meter.closed:  # an answer the proxy billed is closed already
            await asyncio.shield(meter.close(*billed))
    if not bodies:  # the client left: the proxy billed it and sent nothing
        raise GatewayError(499, "client disconnected", code="client_disconnect")
    try:
        return json.loads(b"".join(bodies))
    except ValueError as exc:
        raise GatewayError(502, "the engine answered non-JSON", code="upstream_error") from exc
