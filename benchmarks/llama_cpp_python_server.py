"""The local chat engine suanwang ran before llama-server, kept for benchmarks/serving.py.

llama-cpp-python's OpenAI-compatible server (``llama_cpp.server``), as
``src/suanwang/engines/llama.py`` ran it until llama.cpp's own ``llama-server`` replaced it:
``python benchmarks/llama_cpp_python_server.py --model GGUF --model-alias NAME --port P``.
It serves one request at a time and interrupts the running one when another arrives; the
serving benchmark measures that against llama-server in the same run.

Three adjustments it needed then, kept so the comparison is fair:

- llama-cpp-python answers **400 with an empty body** to any ``X-Request-Id`` that is not a
  UUID, and the gateway sends ids such as ``req_3f9c…``: :class:`RequestIdGuard` maps such an
  id to a UUID5 of it;
- ``GET /health`` that does not wait for the model lock (``/v1/models`` does);
- weights loaded without llama.cpp's extra buffer types (runtime repacking, AMX): on these
  VMs the AMX path faults on its first ``ldtilecfg``.
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

    _without_extra_buffer_types()
    settings = ModelSettings(model=model, model_alias=alias, n_ctx=n_ctx, n_threads=n_threads)
    app = create_app(server_settings=ServerSettings(), model_settings=[settings])
    app.add_middleware(RequestIdGuard)
    app.add_api_route("/health", _health, methods=["GET"])
    return app


def _without_extra_buffer_types() -> None:
    """Make every model this process loads skip extra buffer types (see the module doc):
    ``Llama`` takes its model parameters from ``llama_model_default_params`` and has no
    argument for this one."""
    import llama_cpp.llama_cpp as native

    defaults = native.llama_model_default_params

    def params() -> Any:
        chosen = defaults()
        chosen.use_extra_bufts = False
        return chosen

    native.llama_model_default_params = params


async def _health() -> dict[str, str]:
    """Liveness without the model lock (``/v1/models`` waits for a running generation)."""
    return {"status": "ok"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/llama_cpp_python_server.py")
    parser.add_argument("--model", required=True, help="path of the GGUF file")
    parser.add_argument("--model-alias", required=True, help="the model name clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-threads", type=int, default=1)
    args = parser.parse_args(argv)
    import uvicorn

    app = build(args.model, args.model_alias, args.n_ctx, args.n_threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
