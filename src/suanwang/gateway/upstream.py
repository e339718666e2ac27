"""HTTP clients to the engines, one pooled client per URL scheme.

``http``/``https`` replicas use one shared connection pool. Other schemes (``sim://`` for
simulated replicas) need an injected transport, typically
``httpx.ASGITransport(app=simulated_engine_app)``; their URLs are rewritten to ``http://``
for httpx. A base URL may end in ``/v1`` or not. URLs come only from
:class:`~suanwang.domain.serving.ReplicaView`, never from a request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from suanwang.domain.serving import ReplicaView
from suanwang.gateway.errors import GatewayError
from suanwang.gateway.http11 import Http11Pool, Http11Response
from suanwang.gateway.schema import Call

log = structlog.get_logger("suanwang.gateway")
LLAMA_CPP = "llama.cpp"
DRAIN_S = 0.5
"""How long a finished stream may take to send its last bytes and keep its connection."""
RETRYABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
"""Errors that prove the engine did not start the request: safe to retry elsewhere."""


class UpstreamResponse(Protocol):
    """What the proxy reads of an engine's answer (``httpx.Response`` or our own client's)."""

    @property
    def status_code(self) -> int: ...

    async def aread(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 2.0
    read_s: float = 300.0
    """Longest wait for the first byte, and between two streamed chunks."""


class Upstreams:
    """The clients; close with :meth:`aclose`."""

    def __init__(
        self,
        timeouts: Timeouts,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        max_connections: int = 512,
    ) -> None:
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._clients: dict[str, httpx.AsyncClient] = {
            "http": httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)
        }
        self._clients["https"] = self._clients["http"]
        self._pool = Http11Pool(timeouts.connect_s, timeouts.read_s)
        for scheme, transport in (transports or {}).items():
            self._clients[scheme] = httpx.AsyncClient(
                transport=transport, timeout=timeout, trust_env=False
            )

    def target(self, replica: ReplicaView, path: str) -> tuple[httpx.AsyncClient, str]:
        """The client and URL for ``path`` (e.g. ``chat/completions``) on ``replica``."""
        scheme, sep, rest = replica.base_url.partition("://")
        client = self._clients.get(scheme)
        if not sep or client is None:
            raise GatewayError(
                502, f"replica {replica.replica_id} has an unusable base URL", code="bad_replica"
            )
        base = rest.rstrip("/")
        if not base.endswith("/v1"):
            base += "/v1"
        return client, f"{'https' if scheme == 'https' else 'http'}://{base}/{path}"

    async def post(
        self, replica: ReplicaView, path: str, payload: bytes, headers: dict[str, str]
    ) -> UpstreamResponse:
        """POST to ``path`` on ``replica``; returns once the answer's headers are read."""
        client, url = self.target(replica, path)
        if replica.credential is not None or replica.upstream_model is not None:
            payload, headers = for_external(replica, payload, headers)
        if replica.base_url.startswith("http://"):
            return await self._pool.post(url, payload, headers)
        request = client.build_request("POST", url, content=payload, headers=headers)
        return await client.send(request, stream=True)

    async def count_prompt(self, replica: ReplicaView, call: Call) -> int | None:
        """The prompt tokens of ``call`` as the engine counts them (llama.cpp only), or None.

        Chat: llama-server's ``/apply-template`` renders the request with the model's chat
        template exactly as a completion would (tools included), and ``/tokenize`` of that
        text, special tokens parsed and BOS added where the model adds one, is the
        ``usage.prompt_tokens`` the completion reports. Needed only for a stream that ends
        without the engine's usage (cut short). Other requests, or a template the engine
        refuses: the tokenizer's count of the raw prompt text.
        """
        if replica.engine != LLAMA_CPP or not call.prompt_text:
            return None
        client, url = self.target(replica, "chat/completions")
        root = url.removesuffix("/v1/chat/completions")
        text = call.prompt_text
        if isinstance(call.body.get("messages"), list):
            chat = {k: v for k, v in call.body.items() if k in CHAT_FIELDS}
            rendered = await _post(client, f"{root}/apply-template", chat)
            prompt = rendered.get("prompt") if rendered is not None else None
            text = prompt if isinstance(prompt, str) else text
        tokenized = await _post(client, f"{root}/tokenize", {"content": text, "add_special": True})
        tokens = tokenized.get("tokens") if tokenized is not None else None
        return len(tokens) if isinstance(tokens, list) else None

    async def aclose(self) -> None:
        await self._pool.aclose()
        for client in {id(c): c for c in self._clients.values()}.values():
            await client.aclose()


async def finish(response: UpstreamResponse) -> None:
    """Close an answer whose content was read in full, keeping its connection if possible."""
    if isinstance(response, Http11Response):
        await response.drain(DRAIN_S)
    else:
        await response.aclose()


def for_external(
    replica: ReplicaView, payload: bytes, headers: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """An external endpoint's request: its credential as ``Authorization: Bearer`` (the
    caller's key never goes upstream) and its upstream model name in the body."""
    if replica.upstream_model is not None:
        body = json.loads(payload)
        body["model"] = replica.upstream_model
        payload = json.dumps(body).encode()
    if replica.credential is not None:
        headers = {**headers, "authorization": f"Bearer {replica.credential.reveal()}"}
    return payload, headers


CHAT_FIELDS = ("messages", "tools", "tool_choice", "parallel_tool_calls", "chat_template_kwargs")
"""What a chat template sees of a request."""


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object ``url`` answers with 200, or None (any failure: the caller falls back)."""
    try:
        response = await client.post(url, json=body, timeout=5.0)
        answer = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("prompt count failed", url=url, error=type(exc).__name__)
        return None
    return answer if isinstance(answer, dict) else None
