"""Embeds through the platform's own gateway (``POST /v1/embeddings``) with the caller's key.

The API server forwards the tenant's bearer token, so the gateway authenticates, limits,
meters and bills the embedding tokens to that key like any other request. Answers are
parsed here once into :class:`~suanwang.ports.Embedded`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio.from_thread
import httpx
from pydantic import BaseModel, ValidationError

from suanwang.domain.errors import Unavailable
from suanwang.ports import Embedded

log = logging.getLogger(__name__)


class _Vector(BaseModel):
    index: int
    embedding: list[float]


class _Usage(BaseModel):
    prompt_tokens: int = 0


class _Answer(BaseModel):
    data: list[_Vector]
    usage: _Usage = _Usage()


class GatewayEmbedder:
    """:class:`~suanwang.ports.Embedder` over HTTP to the gateway at ``base_url``."""

    def __init__(self, base_url: str, timeout_s: float = 60.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s

    def embed(self, model: str, texts: Sequence[str], credential: str | None) -> Embedded:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        body = {"model": model, "input": list(texts), "encoding_format": "float"}
        try:
            response = httpx.post(
                f"{self._base_url}/v1/embeddings",
                json=body,
                headers=headers,
                timeout=self._timeout_s,
            )
        except httpx.HTTPError as exc:
            log.warning("embedding through the gateway failed: %s", exc)
            raise _unavailable(model, f"the gateway cannot be reached ({exc})") from exc
        return parse_answer(model, response.status_code, response.content, len(texts))


Post = Callable[[str, bytes], Coroutine[Any, Any, tuple[int, bytes]]]
"""A whole POST to the gateway (path, JSON body) -> (status, body)."""


class SessionEmbedder:
    """:class:`~suanwang.ports.Embedder` through the API process's own in-process gateway
    as a principal the console authenticated by its session (it holds no key): ``post`` is
    :meth:`~suanwang.ports.AppChat.post_as` bound to that principal. Called from a worker
    thread of the server's event loop (a console page's service call), it runs the request
    on that loop and waits for it."""

    def __init__(
        self, post: Callable[[str, bytes], Coroutine[Any, Any, tuple[int, bytes]]]
    ) -> None:
        self._post = post

    def embed(self, model: str, texts: Sequence[str], credential: str | None) -> Embedded:
        del credential  # the principal is bound in ``post``; a console has no key
        body = {"model": model, "input": list(texts), "encoding_format": "float"}
        status, content = anyio.from_thread.run(
            self._post, "/v1/embeddings", json.dumps(body, ensure_ascii=False).encode()
        )
        return parse_answer(model, status, content, len(texts))


def parse_answer(model: str, status: int, content: bytes, texts: int) -> Embedded:
    """The gateway's answer to ``/v1/embeddings`` of ``texts`` texts, or ``Unavailable``."""
    if status != 200:
        shown = content[:200].decode("utf-8", "replace")
        raise _unavailable(model, f"the gateway answered {status}: {shown}")
    try:
        answer = _Answer.model_validate_json(content)
    except ValidationError as exc:
        raise _unavailable(model, "the gateway's answer is not an embedding list") from exc
    vectors = [v.embedding for v in sorted(answer.data, key=lambda v: v.index)]
    if len(vectors) != texts:
        raise _unavailable(model, f"{len(vectors)} vectors for {texts} texts")
    return Embedded(vectors, answer.usage.prompt_tokens)


def _unavailable(model: str, reason: str) -> Unavailable:
    return Unavailable(
        f"cannot embed with {model}: {reason}",
        field="embedding_model",
        hint="deploy the embedding model (suanwang models deploy) and retry; nothing was indexed",
    )
