"""``suanwang server`` also runs the OpenAI-compatible gateway, as ``make run`` relies on."""

from __future__ import annotations

import time

import httpx

from conftest import Server


def wait_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/v1/models", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        return
    raise AssertionError(f"gateway at {url} did not come up in {timeout_s} s")


def test_the_server_starts_the_gateway(server: Server, demo_key: str) -> None:
    wait_up(server.gateway_url)
    listed = httpx.get(
        f"{server.gateway_url}/v1/models", headers={"Authorization": f"Bearer {demo_key}"}
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["object"] == "list"
    refused = httpx.get(
        f"{server.gateway_url}/v1/models", headers={"Authorization": "Bearer sw_nope"}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
