"""ASGI middleware that refuses request bodies over a size limit with 413, without buffering."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB; a 10,000-card fleet file is ~2 KiB with node groups
_FILE_UPLOAD = re.compile(r"^/api/v1/datasets/[^/]+/files$")


UPLOAD_OVERHEAD_BYTES = 64 << 10
"""What a multipart body may add around an uploaded file (boundaries, part headers)."""
DEFAULT_HINT = "send a smaller body; fleet files can use node_groups"


@dataclass(frozen=True, slots=True)
class LargerBody:
    """A path (a full-match pattern) whose POST bodies may be up to ``max_bytes``."""

    path: re.Pattern[str]
    max_bytes: int
    hint: str


def is_file_upload(scope: Scope) -> bool:
    """A dataset file upload: streamed to disk and bounded by the storage quota instead."""
    return scope["method"] == "PUT" and bool(_FILE_UPLOAD.match(scope["path"]))


class BodyTooLarge(Exception):
    """Raised inside the receive channel when a body exceeds the limit."""


class BodySizeLimit:
    """Rejects bodies larger than ``max_bytes`` (by Content-Length, or while streaming)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = DEFAULT_MAX_BODY_BYTES,
        exempt: Callable[[Scope], bool] | None = None,
        larger: Sequence[LargerBody] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self._exempt = exempt
        self.larger = tuple(larger)

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if scope.get("method") == "POST":
            for rule in self.larger:
                if rule.path.match(scope.get("path", "")):
                    return rule.max_bytes, rule.hint
        return self.max_bytes, DEFAULT_HINT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._exempt is not None and self._exempt(scope)):
            await self.app(scope, receive, send)
            return
        max_bytes, hint = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._reject(send, max_bytes, hint)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send, max_bytes, hint)

    async def _reject(self, send: Send, max_bytes: int, hint: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"request body exceeds {max_bytes} bytes",
                "field": "body",
                "hint": hint,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
