"""Small raw-ASGI helpers: read a bounded body, send JSON, send errors, watch disconnects."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

from suanwang.gateway.errors import GatewayError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def client_request_id(scope: Scope) -> str | None:
    """The caller's ``x-request-id`` if it is short and plain, else None."""
    raw = header(scope, b"x-request-id")
    if raw is None:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if REQUEST_ID.match(text) else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, or a 413 GatewayError past ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"the body is larger than {limit} bytes", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "client disconnected", code="client_disconnect")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"the body is larger than {limit} bytes", code="body_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(content_type: bytes, request_id: str, extra: dict[str, str]) -> list[list[bytes]]:
    headers = [[b"content-type", content_type], [b"x-request-id", request_id.encode()]]
    headers += [[k.encode(), v.encode()] for k, v in extra.items()]
    return headers


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    extra: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    headers = _headers(content_type.encode(), request_id, extra or {})
    headers.append([b"content-length", str(len(body)).encode()])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, request_id: str) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), request_id)


async def send_error(send: Send, error: GatewayError, request_id: str) -> None:
    await send_bytes(send, error.status, error.body(), request_id, error.headers)


async def start_stream(send: Send, request_id: str) -> None:
    headers = _headers(b"text/event-stream", request_id, {"cache-control": "no-cache"})
    await send({"type": "http.response.start", "status": 200, "headers": headers})


WATCH_AFTER_S = 0.05
"""How long into a block :class:`DisconnectWatch` starts watching: most answers come
sooner and never pay for the watcher task (a timer costs about a sixth of a task)."""


class DisconnectWatch:
    """Cancel a block when the client goes away (enter it after the request body was read).

    ``async with DisconnectWatch(receive) as watch:`` runs the block in the current task; a
    watcher, started ``after_s`` into the block, cancels it on ``http.disconnect`` (a client
    that left sooner is noticed then: the server keeps the message). That cancellation ends
    the block quietly, with :attr:`gone` true; any other cancellation propagates (the
    counting of ``asyncio.timeout``: the task is uncancelled once for the watcher's request).
    """

    def __init__(self, receive: Receive, after_s: float = WATCH_AFTER_S) -> None:
        self._receive = receive
        self._after_s = after_s
        self._gone = False
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def gone(self) -> bool:
        """Whether the client went away while the block ran."""
        return self._gone

    async def __aenter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(self._after_s, self._start)
        return self

    def _start(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        assert self._task is not None
        self._gone = True
        self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._timer is not None
        assert self._task is not None
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()  # synchronous: it cannot cancel this task any more
        if not self._gone:
            return False
        others = self._task.uncancel()
        return exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and not others
