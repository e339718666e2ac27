"""Health checks of engines over HTTP: ``GET <base_url>/health``, bounded timeouts.

``/health`` answers 200 once the engine can serve (vLLM, SGLang, llama.cpp's llama-server,
our embedding server and the simulated engine all serve it; llama-server answers 503 while
it loads the model, so a loading replica stays ``starting``). Only 200 counts as healthy.

External endpoints (:meth:`HttpProbe.reachable`) are probed at the URL and with the headers
each target names (``/health`` or ``/v1/models`` with its credential); redirects are never
followed, so a 3xx is unhealthy.

All engines are probed at once (one thread each, capped), so one hung engine costs at most
``timeout_s`` for the whole round. Only ``http(s)://`` URLs are probed; anything else
(``sim://``) is reported unhealthy, since simulated replicas are never probed.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

from suanwang.ports import ProbeTarget

MAX_PARALLEL = 16


class HttpProbe:
    """:class:`~suanwang.ports.EngineProbe` over httpx."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        self._timeout = httpx.Timeout(timeout_s)

    def healthy(self, base_urls: list[str]) -> dict[str, bool]:
        urls = [u for u in base_urls if u.startswith(("http://", "https://"))]
        result = dict.fromkeys(base_urls, False)
        if not urls:
            return result
        with (
            httpx.Client(timeout=self._timeout, trust_env=False) as client,
            ThreadPoolExecutor(min(MAX_PARALLEL, len(urls))) as pool,
        ):
            for url, ok in zip(urls, pool.map(lambda u: _check(client, u), urls), strict=True):
                result[url] = ok
        return result

    def reachable(self, targets: list[ProbeTarget]) -> dict[str, bool]:
        result = dict.fromkeys((t.key for t in targets), False)
        probed = [t for t in targets if t.url.startswith(("http://", "https://"))]
        if not probed:
            return result
        with (
            httpx.Client(timeout=self._timeout, trust_env=False, follow_redirects=False) as client,
            ThreadPoolExecutor(min(MAX_PARALLEL, len(probed))) as pool,
        ):
            checks = pool.map(lambda t: _get_ok(client, t.url, dict(t.headers)), probed)
            for target, ok in zip(probed, checks, strict=True):
                result[target.key] = ok
        return result


def _get_ok(client: httpx.Client, url: str, headers: dict[str, str]) -> bool:
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _check(client: httpx.Client, base_url: str) -> bool:
    try:
        response = client.get(base_url.rstrip("/") + "/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (the system resolver); OSError when none."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
