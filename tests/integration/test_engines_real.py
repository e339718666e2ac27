"""Real engines deployed through suanwang on the local cluster: the session's live stack.

SmolLM2-135M-Instruct on llama.cpp's ``llama-server`` and all-MiniLM-L6-v2 on our embedding
server, deployed with ``Deployments.deploy`` and placed by a real control loop (fixture
``live_engines``, tests/integration/live_engines.py), then:

- a chat completion is answered by llama-server at the replica's ``base_url``, which runs
  the catalogue's context in every one of its slots;
- the embedding server returns one vector per input (float and base64);
- the official ``openai`` client, unchanged, talks to the gateway whose answers come from
  these engines (models list, chat, streaming with usage, embeddings) — the acceptance;
- the gateway counts a chat prompt exactly as the engine does (for streams cut short);
- killing the llama-server process gets the replica restarted and ready again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from live_engines import CHAT, EMBED, LiveEngines, live_jobs

from suanwang.config import Settings
from suanwang.domain.serving import ReplicaState, ReplicaView
from suanwang.gateway.schema import parse_call
from suanwang.gateway.upstream import Timeouts, Upstreams
from suanwang.services.models import default_models

CHAT_TIMEOUT_S = 90.0


def test_chat_answered_by_llama_cpp_at_the_replica(live_engines: LiveEngines) -> None:
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    response = httpx.post(
        f"{live_engines.engine_url()}/v1/chat/completions",
        json=body,
        headers={"x-request-id": "req_3f9c"},  # not a UUID: llama-cpp-python refused these
        timeout=CHAT_TIMEOUT_S,
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"]
    # llama.cpp finishes a multi-byte character split across tokens (an emoji) past
    # max_tokens and counts those tokens: seen 10 for max_tokens=8 ("Oh, hi there! 😊🌟")
    assert 0 < answer["usage"]["completion_tokens"] <= 8 + 3


def test_every_slot_has_the_catalogue_context(live_engines: LiveEngines) -> None:
    """The catalogue (which the API's model list and the gateway's max_tokens check read)
    and the engine agree on the context (8,192 for SmolLM2; the engine used to run 4,096),
    and every parallel slot has all of it."""
    stated = default_models()[CHAT].context_length
    settings = Settings()
    props = httpx.get(f"{live_engines.engine_url()}/props", timeout=10).json()
    assert props["total_slots"] == settings.llama_slots
    assert props["default_generation_settings"]["n_ctx"] == stated
    slots = httpx.get(f"{live_engines.engine_url()}/slots", timeout=10)
    if slots.status_code == 200:  # the slots endpoint is on by default in llama-server
        assert [s["n_ctx"] for s in slots.json()] == [stated] * settings.llama_slots


def test_embeddings_one_vector_per_input(live_engines: LiveEngines) -> None:
    url = f"{live_engines.engine_url(live_engines.embed)}/v1/embeddings"
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


def test_openai_client_through_the_gateway(live_engines: LiveEngines) -> None:
    """Acceptance: the official client, unchanged, against a gateway fed by these engines."""
    openai = pytest.importorskip("openai")
    secret = live_engines.tenant("acme")
    client = openai.OpenAI(
        base_url=live_engines.gateway_url, api_key=secret, timeout=CHAT_TIMEOUT_S
    )
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


def test_streamed_prompt_tokens_equal_the_unstreamed_usage(live_engines: LiveEngines) -> None:
    """A stream is billed the prompt tokens the same request gets unstreamed (the template
    counts: more than the raw text's tokens)."""
    secret = live_engines.tenant("templated")
    headers = {"authorization": f"Bearer {secret}"}
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Name a colour."}]}
    body["max_tokens"] = 4
    url = live_engines.gateway_url + "/chat/completions"
    answer = httpx.post(url, json=body, headers=headers, timeout=CHAT_TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    plain = answer.json()["usage"]
    streaming = body | {"stream": True, "stream_options": {"include_usage": True}}
    streamed = httpx.post(url, json=streaming, headers=headers, timeout=CHAT_TIMEOUT_S)
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line[6:7] == "{"]
    (usage,) = [e["usage"] for e in events if e.get("usage")]
    raw = httpx.post(
        f"{live_engines.engine_url()}/tokenize", json={"content": "Name a colour."}, timeout=10
    ).json()["tokens"]
    assert usage["prompt_tokens"] == plain["prompt_tokens"] > len(raw)  # the template counts


CONVERSATIONS = [
    [{"role": "user", "content": "Name a colour."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3 + 3? Answer in words, with an emoji 🎉."},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS, ids=["one-turn", "system-and-turns"])
def test_gateway_counts_a_prompt_as_the_engine_does(
    live_engines: LiveEngines, messages: list[dict[str, str]]
) -> None:
    """What a stream cut short is billed for its prompt (``Upstreams.count_prompt``: the
    engine's ``/apply-template`` then ``/tokenize``) is the engine's own
    ``usage.prompt_tokens`` for the same request."""
    body = {"model": CHAT, "messages": messages, "max_tokens": 1}
    replica = live_engines.replica()
    reported = httpx.post(
        f"{replica.base_url}/v1/chat/completions", json=body, timeout=CHAT_TIMEOUT_S
    ).json()["usage"]["prompt_tokens"]
    view = ReplicaView(replica.id, live_engines.chat, CHAT, "llama.cpp", replica.base_url, None)
    call = parse_call("chat/completions", json.dumps(body).encode(), 16)

    async def count() -> int | None:
        upstreams = Upstreams(Timeouts())
        try:
            return await upstreams.count_prompt(view, call)
        finally:
            await upstreams.aclose()

    assert asyncio.run(count()) == reported


def test_kill_9_of_the_control_plane_leaves_the_engine_serving(
    live_engines: LiveEngines,
) -> None:
    """A control-plane process killed with -9 leaves llama.cpp running; the next one re-attaches."""
    live = live_engines
    live.paused.set()
    try:
        before = live.replica()
        jobs = sorted(live_jobs(live.platform))
        first, _ = live.serve()
        time.sleep(1.5)  # a few ticks of the real control plane
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert httpx.get(f"{before.base_url}/v1/models", timeout=5).status_code == 200
        second, _ = live.serve()
        try:
            time.sleep(2.0)
            after = live.replica()
            assert (after.job, after.port, after.state) == (before.job, before.port, before.state)
            assert sorted(live_jobs(live.platform)) == jobs
        finally:
            second.terminate()
            second.wait(20)
    finally:
        live.paused.clear()


def test_killed_engine_is_restarted_and_ready_again(live_engines: LiveEngines) -> None:
    live = live_engines
    before = live.replica()
    assert before.job is not None
    launches = sorted((live.stack.settings.runs_dir / before.job).glob("*/launch.json"))
    os.kill(int(json.loads(Path(launches[-1]).read_text())["child_pid"]), signal.SIGKILL)

    def restarted() -> bool:
        now = live.replica()
        return now.job != before.job and now.state is ReplicaState.READY

    live.wait(restarted)
    after = live.replica()
    assert after.port == before.port
    assert after.restarts == before.restarts + 1
    body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    response = httpx.post(f"{after.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 200
