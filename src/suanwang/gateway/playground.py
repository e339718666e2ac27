"""The console's chat playground through the gateway's own pipeline, in the caller's process.

:class:`GatewayAppChat` implements :class:`~suanwang.ports.AppChat`: it asks
``model="app:<name>"`` on ``/v1/chat/completions`` (streamed) of a :class:`GatewayApp`
built on first use by the composition root, as the session's principal
(``GatewayApp.call_as``). So a playground question takes exactly the path of a gateway
call with a key: the app's resolution for that key (sharing), the query's embedding (its
own usage row), retrieval, the prompt, the key's allow-list, rate limits, quota
reservation, routing and failover, and one usage row per request with
``source = app:<name>@<v>``. No key is involved: the session's principal is handed over
in-process, never a secret.

The gateway's answer (OpenAI's server-sent events, citations on the last chunk) is parsed
here, at the edge, into :mod:`suanwang.domain.app_chat` events. Closing the event
iterator early is a client that left: the request sees ``http.disconnect``, stops the
engine and is billed as the gateway bills any client that leaves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

from suanwang.domain.app_chat import (
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerText,
    citation_of,
)
from suanwang.domain.apps import APP_NAME, APP_PREFIX
from suanwang.domain.tenancy import Principal
from suanwang.gateway.asgi import Message, Receive, Scope, Send

CHAT_PATH = "/v1/chat/completions"
BROKEN = AnswerFailed(502, "the gateway answered an unexpected shape")


class InProcessGateway(Protocol):
    """What the playground needs of :class:`~suanwang.gateway.app.GatewayApp`."""

    async def start(self) -> None: ...

    async def call_as(
        self, principal: Principal, scope: Scope, receive: Receive, send: Send
    ) -> None: ...

    async def aclose(self) -> None: ...


class GatewayAppChat:
    """:class:`~suanwang.ports.AppChat` over an in-process gateway app, built (by
    ``build``) and started on the first question, stopped by :meth:`aclose`."""

    def __init__(self, build: Callable[[], InProcessGateway]) -> None:
        self._build = build
        self._gateway: InProcessGateway | None = None
        self._starting = asyncio.Lock()

    async def answer(
        self, principal: Principal, app: str, question: str
    ) -> AsyncGenerator[AnswerEvent, None]:
        """See :class:`~suanwang.ports.AppChat`."""
        if not APP_NAME.match(app):  # the console checked it; a model string never gets odd
            yield AnswerFailed(404, f"no app {app!r}")
            return
        gateway = await self._started()
        body = {
            "model": f"{APP_PREFIX}{app}",
            "messages": [{"role": "user", "content": question}],
            "stream": True,
        }
        exchange = Exchange(json.dumps(body, ensure_ascii=False).encode())
        task = asyncio.create_task(
            gateway.call_as(principal, exchange.scope, exchange.receive, exchange.send)
        )
        task.add_done_callback(lambda _: exchange.ended())
        try:
            async for event in exchange.events():
                yield event
        finally:
            exchange.leave()
            await asyncio.shield(task)

    async def post_as(self, principal: Principal, path: str, body: bytes) -> tuple[int, bytes]:
        """One whole POST of ``body`` (JSON) to the gateway's ``path`` as ``principal``: its
        status and body. The console embeds a knowledge base's documents this way, metered
        and billed to the session's key like a gateway call with that key."""
        gateway = await self._started()
        exchange = Exchange(body, path)
        try:
            await gateway.call_as(principal, exchange.scope, exchange.receive, exchange.send)
        finally:
            exchange.ended()
            exchange.leave()
        return await exchange.whole()

    async def aclose(self) -> None:
        """Stop the gateway's background tasks and flush its usage (if it was started)."""
        if self._gateway is not None:
            await self._gateway.aclose()
            self._gateway = None

    async def _started(self) -> InProcessGateway:
        async with self._starting:
            if self._gateway is None:
                gateway = self._build()
                await gateway.start()
                self._gateway = gateway
            return self._gateway


class Exchange:
    """One in-process request: its ASGI scope, receive and send, and the answer's events."""

    def __init__(self, body: bytes, path: str = CHAT_PATH) -> None:
        self.scope: Scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        self._body: bytes | None = body
        self._left = asyncio.Event()
        self._sent: asyncio.Queue[Message | None] = asyncio.Queue()

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self._sent.put(message)

    def ended(self) -> None:
        """The request finished (however): no more messages."""
        self._sent.put_nowait(None)

    def leave(self) -> None:
        """The reader went away: the request sees ``http.disconnect``."""
        self._left.set()

    async def whole(self) -> tuple[int, bytes]:
        """The finished answer's status and body (500 if it never started)."""
        start = await self._sent.get()
        if start is None or start["type"] != "http.response.start":
            return 500, b'{"error": {"message": "the gateway did not answer"}}'
        return int(start["status"]), b"".join([b async for b in self._bodies()])

    async def events(self) -> AsyncIterator[AnswerEvent]:
        """The answer's events: text pieces, then exactly one done or failed event."""
        start = await self._sent.get()
        if start is None or start["type"] != "http.response.start":
            yield AnswerFailed(500, "the gateway did not answer")
            return
        bodies = self._bodies()
        if start["status"] != 200:
            yield refusal(start["status"], b"".join([b async for b in bodies]))
            return
        stream = SseAnswer()
        async for piece in bodies:
            for event in stream.feed(piece):
                yield event
                if not isinstance(event, AnswerText):
                    return
        yield AnswerFailed(499, "the answer ended early")

    async def _bodies(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._sent.get()
            if message is None:
                return
            if message["type"] == "http.response.body":
                yield bytes(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def refusal(status: int, body: bytes) -> AnswerFailed:
    """A gateway error answer (OpenAI's shape) as an event."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500]
    return AnswerFailed(status, str(message))


class SseAnswer:
    """Parses the gateway's streamed app answer, piece by piece, into events."""

    def __init__(self) -> None:
        self._buffer = b""
        self._done: AnswerDone | None = None

    def feed(self, piece: bytes) -> list[AnswerEvent]:
        self._buffer += piece
        *lines, self._buffer = self._buffer.split(b"\n")
        events: list[AnswerEvent] = []
        for line in lines:
            if line.startswith(b"data:"):
                events += self._event(line[5:].strip())
        return events

    def _event(self, data: bytes) -> list[AnswerEvent]:
        if data == b"[DONE]":
            return [self._done or BROKEN]
        try:
            chunk: Any = json.loads(data)
            if "error" in chunk:
                return [AnswerFailed(502, str(chunk["error"].get("message", "")))]
            if "citations" in chunk:
                self._done = _done(chunk)
            return [
                AnswerText(str(c["delta"]["content"]))
                for c in chunk.get("choices", ())
                if c.get("delta", {}).get("content")
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            return [BROKEN]


def _done(chunk: dict[str, Any]) -> AnswerDone:
    usage = chunk.get("usage") or {}
    return AnswerDone(
        citations=tuple(citation_of(c) for c in chunk["citations"]),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )
