"""llama.cpp's OpenAI-compatible server (llama-cpp-python) as a local replica runs it.

``python -m suanwang.engines.llama --model GGUF --model-alias NAME --port P`` builds the
server of ``llama_cpp.server`` with one guard in front: llama-cpp-python answers **400 with
an empty body** to any ``X-Request-Id`` that is not a UUID (its request-id plugin validates
it), and gateways, proxies and SDKs send ids such as ``req_3f9c…``. The guard maps such an
id to a UUID derived from it (same id, same UUID), so request ids still correlate in logs.
It also adds ``GET /health``: the server's ``/v1/models`` waits for the model lock, so a
health check during a long generation would time out and mark a busy replica unhealthy.

Weights are loaded without llama.cpp's extra buffer types (runtime repacking, AMX) unless
``SUANWANG_LLAMA_REPACK=1``: on VMs whose CPUs advertise AMX (this project's 2-core Firecracker
machines) the AMX path faults on its first ``ldtilecfg`` and the engine dies on the first
generation; without them it answers normally (a small model loses little).

And ``POST /extras/chat/tokenize/count``: the prompt tokens of a chat request exactly as
the server counts them in ``usage.prompt_tokens`` (chat template applied, BOS and special
tokens included), which the server's ``/extras/tokenize/count`` (raw text) cannot give.
The gateway needs it for streams, where llama.cpp reports no usage.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
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


class _Counted(Exception):
    """Raised with the prompt's token count: a signal, not an error."""

    def __init__(self, tokens: int) -> None:
        super().__init__(tokens)
        self.tokens = tokens


class _PromptCounter:
    """Stands in for the ``Llama`` a chat handler is given: the handler formats the prompt
    as it would for a completion, and its first ``tokenize`` is the prompt; stop there."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        raise _Counted(len(self._llama.tokenize(text, add_bos=add_bos, special=special)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)


CHAT_FIELDS = ("functions", "function_call", "tools", "tool_choice")


def chat_prompt_tokens(llama: Any, body: dict[str, Any]) -> int:
    """``usage.prompt_tokens`` of ``body`` (a chat request) on ``llama``, without running it:
    the same handler ``Llama.create_chat_completion`` picks, with the same arguments."""
    handler = llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
    if handler is None:
        from llama_cpp import llama_chat_format

        handler = llama_chat_format.get_chat_completion_handler(llama.chat_format)
    extra = {k: body[k] for k in CHAT_FIELDS if body.get(k) is not None}
    try:
        counter: Any = _PromptCounter(llama)
        handler(llama=counter, messages=body["messages"], **extra)
    except _Counted as counted:
        return counted.tokens
    raise ValueError("this chat handler does not tokenize a prompt")


def build(model: str, alias: str, n_ctx: int, n_threads: int) -> Any:
    """The llama-cpp-python server app for one GGUF, with :class:`RequestIdGuard`."""
    from fastapi import Depends
    from fastapi.responses import JSONResponse
    from llama_cpp.server.app import create_app, get_llama_proxy
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    if os.environ.get("SUANWANG_LLAMA_REPACK") != "1":
        _without_extra_buffer_types()
    settings = ModelSettings(model=model, model_alias=alias, n_ctx=n_ctx, n_threads=n_threads)
    app = create_app(server_settings=ServerSettings(), model_settings=[settings])
    app.add_middleware(RequestIdGuard)
    app.add_api_route("/health", _health, methods=["GET"])

    async def count(request: Request, proxy: Any = Depends(get_llama_proxy)) -> Any:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": {"message": "messages: a list is required"}}, 400)
        name = body.get("model")
        try:
            tokens = chat_prompt_tokens(proxy(name if isinstance(name, str) else None), body)
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": {"message": str(exc)}}, 400)
        return {"count": tokens}

    app.add_api_route("/extras/chat/tokenize/count", count, methods=["POST"])
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
