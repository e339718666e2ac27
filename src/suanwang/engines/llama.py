"""llama.cpp's OpenAI-compatible server (llama-cpp-python) as a local replica runs it.

``python -m suanwang.engines.llama --model GGUF --model-alias NAME --port P`` builds the
server of ``llama_cpp.server`` with one guard in front: llama-cpp-python answers **400 with
an empty body** to any ``X-Request-Id`` that is not a UUID (its request-id plugin validates
it), and gateways, proxies and SDKs send ids such as ``req_3f9c…``. The guard maps such an
id to a UUID derived from it (same id, same UUID), so request ids still correlate in logs.
It also adds ``GET /health``: the server's ``/v1/models`` waits for the model lock, so a
health check during a long generation would time out and mark a busy replica unhealthy.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

_HEADER = b"x-request-id"


class RequestIdGuard:
    """ASGI middleware: non-UUID ``X-Request-Id`` values become a UUID5 of the value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, _uuid_id(v) if k == _HEADER else v) for k, v in scope["headers"]]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _uuid_id(value: bytes) -> bytes:
    text = value.decode("latin-1")
    try:
        return uuid.UUID(text).hex.encode()
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, text).hex.encode()


def build(model: str, alias: str, n_ctx: int, n_threads: int) -> Any:
    """The llama-cpp-python server app for one GGUF, with :class:`RequestIdGuard`."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    settings = ModelSettings(model=model, model_alias=alias, n_ctx=n_ctx, n_threads=n_threads)
    app = create_app(server_settings=ServerSettings(), model_settings=[settings])
    app.add_middleware(RequestIdGuard)
    app.add_api_route("/health", _health, methods=["GET"])
    return app


async def _health() -> dict[str, str]:
    """Liveness without the model lock (``/v1/models`` waits for a running generation)."""
    return {"status": "ok"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m suanwang.engines.llama")
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--model-alias", required=True, help="the model name clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-threads", type=int, default=1)
    args = parser.parse_args(argv)
    import uvicorn

    app = build(args.model, args.model_alias, args.n_ctx, args.n_threads)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
