"""Embeds through the platform's own gateway (``POST /v1/embeddings``) with the caller's key.

The API server forwards the tenant's bearer token, so the gateway authenticates, limits,
meters and bills the embedding tokens to that key like any other request. Answers are
parsed here once into :class:`~suanwang.ports.Embedded`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
        if response.status_code != 200:
            raise _unavailable(
                model, f"the gateway answered {response.status_code}: {response.text[:200]}"
            )
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise _unavailable(model, "the gateway's answer is not an embedding list") from exc
        vectors = [v.embedding for v in sorted(answer.data, key=lambda v: v.index)]
        if len(vectors) != len(texts):
            raise _unavailable(model, f"{len(vectors)} vectors for {len(texts)} texts")
        return Embedded(vectors, answer.usage.prompt_tokens)


def _unavailable(model: str, reason: str) -> Unavailable:
    return Unavailable(
        f"cannot embed with {model}: {reason}",
        field="embedding_model",
        hint="deploy the embedding model (suanwang models deploy) and retry; nothing was indexed",
    )
