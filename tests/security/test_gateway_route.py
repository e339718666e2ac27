"""The route of a ``network: gateway`` job: the live gateway, and nothing else of the host.

Against a real control plane and gateway (``hostile_stack.py``, SQLite and PostgreSQL),
tenant B runs jobs that ask for ``network: gateway``. Each calls the gateway's
``/v1/models`` with B's own key (200), without a key (401), tries the control plane's API
path through the same route (not served there), and connects to PostgreSQL, Redis and the
API port on 127.0.0.1 (refused: the job's own network namespace has nothing there). A
``network: none`` job cannot reach the gateway at all, a tenant cannot ask for any other
network (422), and the relay (``socat``) dies with the attempt, also on cancel.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import hostproc
import httpx
import pytest
from hostile_stack import TERMINAL, Api, Stack

pytestmark = pytest.mark.timeout(600)
CONCURRENT = 8
PROBE = """
import json, os, socket, sys, time, urllib.error, urllib.request
token, ports, hold = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "hold"
url = os.environ["SUANWANG_GATEWAY_URL"]
print("URLS", url, os.environ.get("OPENAI_BASE_URL"), flush=True)
def get(path, key=None):
    request = urllib.request.Request(url.removesuffix("/v1") + path)
    if key:
        request.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return type(exc).__name__
print("MODELS", get("/v1/models", os.environ["GW_KEY"]), flush=True)
print("NOAUTH", get("/v1/models"), flush=True)
print("APIPATH", get("/api/v1/jobs", os.environ["GW_KEY"]), flush=True)
for name, port in sorted(ports.items()):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        print("PORT", name, "open", flush=True)
    except OSError as exc:
        print("PORT", name, type(exc).__name__, flush=True)
if hold:
    print("READY", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def b(stack: Stack) -> Iterator[Api]:
    api = stack.api("b")
    yield api
    api.close()


def submit(stack: Stack, api: Api, network: str, hold: bool = False) -> str:
    token = f"gwroute-{secrets.token_hex(6)}"
    stack.tokens.append(token)
    api_port = int(stack.url.rsplit(":", 1)[1])
    ports = f'{{"postgresql": 5432, "redis": 6379, "api": {api_port}}}'
    body = {
        "name": "gateway-probe",
        "command": [sys.executable, "-c", PROBE, token, ports, "hold" if hold else "once"],
        "env": {"GW_KEY": stack.keys["b"]},
        "resources": {"chip": "cpu", "cluster": "local"},
        "max_runtime_s": 600,
        "network": network,
    }
    job = api.call("POST", "/api/v1/jobs", json=body)
    assert job["network"] == network
    return str(job["id"])


def ended(api: Api, job_id: str, timeout_s: float = 120) -> tuple[dict[str, object], str]:
    job = api.wait(job_id, lambda j, _: j["state"] in TERMINAL, timeout_s, "job ended")
    return job, api.log(job_id)


def relays(stack: Stack) -> list[hostproc.Proc]:
    """Live socat processes of this stack's routes (host relays and in-sandbox forwarders)."""
    port = stack.gateway_url.rsplit(":", 1)[1]
    return hostproc.with_token(f"TCP4:127.0.0.1:{port}") + hostproc.with_token(
        f"TCP4-LISTEN:{port},"
    )


def test_gateway_jobs_reach_the_gateway_and_nothing_else(stack: Stack, b: Api) -> None:
    jobs = [submit(stack, b, "gateway") for _ in range(CONCURRENT)]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(lambda job_id: ended(b, job_id), jobs))
    url = f"http://127.0.0.1:{stack.gateway_url.rsplit(':', 1)[1]}/v1"
    for job, log in results:
        assert job["state"] == "succeeded", log
        assert f"URLS {url} {url}" in log, log
        assert "MODELS 200" in log, log
        assert "NOAUTH 401" in log, log  # the gateway's own authentication still applies
        assert "APIPATH 200" not in log, log  # the route leads to the gateway only
        for name in ("postgresql", "redis", "api"):
            assert f"PORT {name} ConnectionRefusedError" in log, log
    assert not relays(stack), "a relay outlived its job"


def test_a_job_without_the_route_cannot_reach_the_gateway(stack: Stack, b: Api) -> None:
    job, log = ended(b, submit(stack, b, "none"))
    assert job["state"] == "failed", log  # no SUANWANG_GATEWAY_URL: KeyError
    assert "KeyError: 'SUANWANG_GATEWAY_URL'" in log, log
    job_id = b.call("POST", "/api/v1/jobs", json=_connect_job(stack))["id"]
    job, log = ended(b, job_id)
    assert job["state"] == "succeeded", log
    assert "GATEWAY ConnectionRefusedError" in log, log
    assert "SOCKET False" in log, log


def _connect_job(stack: Stack) -> dict[str, object]:
    port = int(stack.gateway_url.rsplit(":", 1)[1])
    script = (
        "import os, socket\n"
        f"try: socket.create_connection(('127.0.0.1', {port}), timeout=3); print('GATEWAY open')\n"
        "except OSError as exc: print('GATEWAY', type(exc).__name__)\n"
        "print('SOCKET', os.path.exists('/run/suanwang/gateway.sock'))\n"
    )
    return {
        "name": "no-route",
        "command": [sys.executable, "-c", script],
        "resources": {"chip": "cpu", "cluster": "local"},
    }


@pytest.mark.parametrize("network", ["host", "platform", "GATEWAY", ""])
def test_a_tenant_cannot_ask_for_another_network(stack: Stack, network: str) -> None:
    body = {"command": ["true"], "resources": {"cluster": "local"}, "network": network}
    response = httpx.post(
        f"{stack.url}/api/v1/jobs",
        json=body,
        headers={"Authorization": f"Bearer {stack.keys['b']}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "network", response.text


def test_the_relay_dies_when_the_job_is_cancelled(stack: Stack, b: Api) -> None:
    job_id = submit(stack, b, "gateway", hold=True)
    b.wait(job_id, lambda _, log: "READY" in log, 120, "job ready")
    assert len(relays(stack)) >= 2, "expected the host relay and the job's forwarder"
    b.cancel(job_id)
    job, log = ended(b, job_id)
    assert job["state"] == "cancelled", log
    assert "MODELS 200" in log, log
    deadline = time.monotonic() + 10
    while relays(stack) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not relays(stack), "a relay outlived its cancelled job"
