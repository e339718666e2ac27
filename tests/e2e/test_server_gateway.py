"""``suanwang server`` also runs the OpenAI-compatible gateway, as ``make run`` relies on."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import CLI, Server, base_env, free_port


def answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/v1/models", timeout=2)
    except httpx.TransportError:
        return False
    return True


def wait_down(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while answers(url):
        assert time.monotonic() < deadline, f"gateway at {url} outlived its server"
        time.sleep(0.2)


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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_gateway_stops_with_its_server(tmp_path: Path, sig: signal.Signals) -> None:
    env = base_env(tmp_path / "data")
    gateway_port = free_port()
    env["SUANWANG_GATEWAY_PORT"] = str(gateway_port)
    gateway = f"http://127.0.0.1:{gateway_port}"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [*CLI, "server", "--port", str(free_port())], env=env, stdout=log, stderr=log
    )
    try:
        wait_up(gateway)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        wait_down(gateway)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
