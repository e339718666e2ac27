"""Following a job's log (``GET /api/v1/jobs/{id}/logs?follow=true``) without starving the API.

A follow stream is an async generator: it sleeps on the event loop between polls and reads
the log in a worker thread only for the short read, so a thousand idle followers hold no
thread. It stops when the job ends, when the client goes away, or after ``FOLLOW_MAX_S``.
:class:`FollowSlots` caps open streams per key and overall (429 with Retry-After past
either cap); a slot is freed when its response ends, however it ends.

Not here: reading logs (``services.jobs``), the route itself (``routers.jobs``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from suanwang.adapters.http.problems import problem
from suanwang.services.jobs import LogTail

FOLLOW_POLL_S = 0.25
FOLLOW_MAX_S = 3600.0
RETRY_AFTER_S = 5
TEXT = "text/plain; charset=utf-8"

ReadTail = Callable[[int, int | None], Awaitable[LogTail]]
"""``(offset, attempt) -> LogTail``: the next chunk after what the follower has read."""


class FollowSlots:
    """Counts open follow streams per key and overall. Used from the event loop only."""

    def __init__(self, per_key: int, total: int) -> None:
        self.per_key, self.total = per_key, total
        self._open: dict[str, int] = {}

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def refusal(self, key_id: str) -> JSONResponse | None:
        """A 429 problem if ``key_id`` may not open another stream now, else None."""
        if self._open.get(key_id, 0) >= self.per_key:
            detail = f"this key already follows {self.per_key} logs, the most one key may"
        elif self.open >= self.total:
            detail = f"the server already serves {self.total} log streams, its limit"
        else:
            return None
        return problem(
            429,
            "Too Many Requests",
            detail,
            field="follow",
            hint="close a follow stream, or read with offset= and no follow",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    def take(self, key_id: str) -> Callable[[], None]:
        """Take a slot; returns its release (idempotent)."""
        self._open[key_id] = self._open.get(key_id, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open[key_id] - 1
            if left:
                self._open[key_id] = left
            else:
                del self._open[key_id]

        return release


class FollowResponse(StreamingResponse):
    """A streaming response that frees its slot when it ends: done, failed or disconnected."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type=TEXT)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def follow(
    request: Request, read: ReadTail, first: LogTail, poll_s: float = FOLLOW_POLL_S
) -> AsyncIterator[bytes]:
    """Chunks of the latest attempt's log from ``first`` on, until the job ends."""
    deadline = time.monotonic() + FOLLOW_MAX_S
    tail = first
    while time.monotonic() < deadline and not await request.is_disconnected():
        if tail.chunk:
            yield tail.chunk
        elif tail.ended:
            return
        else:
            await asyncio.sleep(poll_s)
        tail = await read(tail.offset + len(tail.chunk), tail.attempt)
