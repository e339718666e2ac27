"""Apps on the gateway over fakes and the in-process mock engine (issue 15, point 2):
the rewritten call the engine gets, citations on plain and streamed answers, the two
usage rows, and the unknown-model 404 for every app the key may not call."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import httpx

from gateway_support import (
    CHAT,
    EMBED,
    FakeKeys,
    MemorySink,
    client_for,
    load_mock,
    make_gateway,
    replica,
)
from suanwang.domain.apps import AppSettings, PublishedApp
from suanwang.domain.knowledge import ChunkSettings, Hit, KnowledgeBase
from suanwang.domain.tenancy import Principal
from suanwang.domain.usage import UNKNOWN_MODEL
from suanwang.gateway import GatewayApp

KB = KnowledgeBase("kb_0123456789abcdef", "acme", "docs", "", ChunkSettings(), EMBED, 0.0)
HITS = [
    Hit("doc_a:0", "doc_a", "a.md", 0, "The test is on Friday.", 0.9),
    Hit("doc_b:1", "doc_b", "b.md", 1, "Homework is due Monday.", 0.4),
]


class Recorder:
    """The mock engine, keeping the body of every request it answers."""

    def __init__(self) -> None:
        self.engine = load_mock().MockEngine()
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.engine(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(raw or b"{}"))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.engine(scope, replay, send)


class Directory:
    def __init__(self) -> None:
        settings = AppSettings(CHAT, "You tutor.", (KB.id,), temperature=0.3, max_tokens=6)
        self.apps = {("tutor", 1): PublishedApp("tutor", 1, settings, (KB,))}
        self.vectors: list[Sequence[float] | None] = []

    def resolve(self, principal: Principal, name: str, version: int | None) -> PublishedApp | None:
        if principal.tenant_id != "acme":
            return None
        return self.apps.get((name, version or 1))

    def search(self, app: PublishedApp, query: str, vector: Sequence[float] | None) -> list[Hit]:
        self.vectors.append(vector)
        return list(HITS)


def setup() -> tuple[GatewayApp, Recorder, Directory, MemorySink, dict[str, str]]:
    keys, sink, engine, directory = FakeKeys(), MemorySink(), Recorder(), Directory()
    made = make_gateway(
        [replica("r1"), replica("e1", EMBED)],
        keys=keys,
        sink=sink,
        transports={"mock": httpx.ASGITransport(app=engine)},
    )
    app = GatewayApp(dataclasses.replace(made.gw, apps=directory))
    return app, engine, directory, sink, {"acme": keys.add("acme"), "other": keys.add("other")}


async def ask(app: GatewayApp, key: str, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "When is the test?"}]}
    async with client_for(app) as client:
        return await client.post(
            "/v1/chat/completions",
            json=body | extra,
            headers={"authorization": f"Bearer {key}"},
        )


def test_a_plain_answer_cites_and_makes_two_rows() -> None:
    app, engine, directory, sink, keys = setup()
    answer = asyncio.run(ask(app, keys["acme"], "app:tutor", max_tokens=50))
    assert answer.status_code == 200, answer.text
    cited = answer.json()["citations"]
    assert [(c["index"], c["document"], c["chunk_id"]) for c in cited] == [
        (1, "a.md", "doc_a:0"),
        (2, "b.md", "doc_b:1"),
    ]
    embedded, chatted = engine.bodies
    assert (embedded["model"], embedded["input"]) == (EMBED, ["When is the test?"])
    assert chatted["model"] == CHAT
    system, user = chatted["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You tutor.")
    assert "[1] (a.md) The test is on Friday." in system["content"]
    assert user == {"role": "user", "content": "When is the test?"}
    assert (chatted["max_tokens"], chatted["temperature"]) == (6, 0.3)  # capped; the default
    assert directory.vectors == [[0.1, 0.2, 0.3, 0.4]]
    rows = sorted(sink.rows.values(), key=lambda r: r.entry_id)
    assert [r.model for r in rows] == [CHAT, EMBED]
    assert rows[1].entry_id == rows[0].entry_id + "-e"
    assert {r.source for r in rows} == {"app:tutor@1"}
    assert {r.key_id for r in rows} == {"key-0"}
    assert all(r.prompt_tokens > 0 for r in rows)


def test_a_streamed_answer_ends_with_citations_and_usage() -> None:
    app, _, _, sink, keys = setup()
    answer = asyncio.run(ask(app, keys["acme"], "app:tutor@1", stream=True, temperature=1.0))
    assert answer.status_code == 200, answer.text
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("citations" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] > 0
    assert chunks[-1]["citations"][0]["document"] == "a.md"
    assert len(sink.rows) == 2
    assert sum(r.streamed for r in sink.rows.values()) == 1


def test_apps_the_key_may_not_call_are_unknown_models() -> None:
    app, engine, _, sink, keys = setup()
    cases = [
        (keys["other"], "app:tutor"),
        (keys["acme"], "app:nope"),
        (keys["acme"], "app:tutor@2"),
        (keys["acme"], "app:Bad Name"),
        (keys["acme"], "no-such-model"),
    ]
    messages = set()
    for key, model in cases:
        answer = asyncio.run(ask(app, key, model))
        assert answer.status_code == 404, (model, answer.text)
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        messages.add(error["message"].replace(repr(model), "M"))
    assert len(messages) == 1
    assert engine.bodies == []  # nothing was embedded or asked
    assert {r.model for r in sink.rows.values()} == {UNKNOWN_MODEL}


def test_apps_only_answer_chat_completions() -> None:
    app, _, _, _, keys = setup()

    async def embed() -> httpx.Response:
        async with client_for(app) as client:
            return await client.post(
                "/v1/embeddings",
                json={"model": "app:tutor", "input": "x"},
                headers={"authorization": f"Bearer {keys['acme']}"},
            )

    assert asyncio.run(embed()).status_code == 404


def test_eight_app_calls_at_once_each_cite_and_bill_a_pair() -> None:
    app, _, _, sink, keys = setup()

    async def many() -> list[httpx.Response]:
        calls = [ask(app, keys["acme"], "app:tutor", stream=bool(i % 2)) for i in range(8)]
        return list(await asyncio.gather(*calls))

    answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 8
    for i, answer in enumerate(answers):
        if i % 2:
            last = [line for line in answer.text.splitlines() if line.startswith("data: {")][-1]
            assert json.loads(last[6:])["citations"]
        else:
            assert answer.json()["citations"]
    assert len(sink.rows) == 16
    chats = {r.entry_id for r in sink.rows.values() if r.model == CHAT}
    embeds = {r.entry_id for r in sink.rows.values() if r.model == EMBED}
    assert embeds == {f"{c}-e" for c in chats}
