"""The chat playground's pure parts and its in-process gateway seam, with a fake gateway:
the answer's events (domain/app_chat.py), the parser of the gateway's streamed app answer
and the exchange that runs a call in-process (gateway/playground.py), the console's lines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.adapters.http.console.chat_pages import line
from suanwang.adapters.knowledge.embedder import SessionEmbedder
from suanwang.domain.app_chat import (
    MAX_QUESTION_CHARS,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerText,
    Citation,
    check_question,
)
from suanwang.domain.errors import Unavailable, ValidationError
from suanwang.domain.tenancy import Principal, Scope, TenantId
from suanwang.gateway.asgi import Message, Receive, Send
from suanwang.gateway.asgi import Scope as AsgiScope
from suanwang.gateway.playground import BROKEN, GatewayAppChat, SseAnswer, refusal
from suanwang.ports import Embedded

ME = Principal("key_me", Scope.TENANT_MEMBER, TenantId("acme"))
CITED: dict[str, Any] = {
    "index": 1,
    "document": "harbor.md",
    "document_id": "doc_1",
    "chunk_id": "chk_1",
    "score": 0.5,
    "text": "Harbor City gets 1,200 mm of rain.",
}


def sse(*chunks: dict[str, Any]) -> bytes:
    lines = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return b"".join(lines) + b"data: [DONE]\n\n"


def delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


LAST = {"choices": [], "citations": [CITED], "usage": {"prompt_tokens": 30, "completion_tokens": 2}}
DONE = AnswerDone((Citation(1, "harbor.md", "doc_1", "chk_1", 0.5, CITED["text"]),), 30, 2)


def parsed(stream: bytes, cuts: list[int]) -> list[AnswerEvent]:
    parser, events, start = SseAnswer(), [], 0
    for cut in [*sorted(cuts), len(stream)]:
        events += parser.feed(stream[start:cut])
        start = max(start, cut)
    return events


def test_a_streamed_app_answer_is_text_pieces_then_done_with_its_citations() -> None:
    events = parsed(sse(delta("Rain"), delta(": 1,200 mm"), LAST), [])
    assert events == [AnswerText("Rain"), AnswerText(": 1,200 mm"), DONE]


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_how_the_bytes_are_cut_never_changes_the_events(cuts: list[int]) -> None:
    stream = sse(delta("雨"), delta("量 1,200"), delta(" mm"), LAST)
    assert parsed(stream, cuts) == parsed(stream, [])


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b'data: {"error": {"message": "the engine failed mid-stream"}}\n\n', "mid-stream"),
        (sse(delta("no citations")), BROKEN.message),
        (b"data: {not json\n\n", BROKEN.message),
    ],
)
def test_a_broken_stream_is_one_failed_event(stream: bytes, expected: str) -> None:
    failed = [e for e in parsed(stream, []) if isinstance(e, AnswerFailed)]
    assert len(failed) == 1
    assert expected in failed[0].message


def test_a_refusal_keeps_the_gateways_status_and_message() -> None:
    body = json.dumps({"error": {"message": "The model 'app:x' does not exist"}}).encode()
    assert refusal(404, body) == AnswerFailed(404, "The model 'app:x' does not exist")
    assert refusal(502, b"<html>") == AnswerFailed(502, "<html>")


@pytest.mark.parametrize("question", ["", "   ", "x" * (MAX_QUESTION_CHARS + 1)])
def test_a_bad_question_is_refused_naming_the_message_field(question: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_question(question)
    assert refused.value.field == "message"


def test_the_console_sends_one_json_line_per_event() -> None:
    assert json.loads(line(AnswerText("<b>hi</b>"))) == {"event": "text", "text": "<b>hi</b>"}
    done = json.loads(line(DONE))
    assert done["event"] == "done"
    assert done["citations"][0]["document"] == "harbor.md"
    assert line(AnswerFailed(404, "no")).endswith(b"\n")


class FakeGateway:
    """Answers like the gateway: a stream of ``pieces``, or ``status`` with an error body.
    With ``hold``, waits after the first piece until the client leaves."""

    def __init__(self, pieces: list[bytes], status: int = 200, hold: bool = False) -> None:
        self.pieces, self.status, self.hold = pieces, status, hold
        self.started = 0
        self.asked: list[tuple[Principal, dict[str, Any]]] = []
        self.left = False

    async def start(self) -> None:
        self.started += 1

    async def aclose(self) -> None:
        pass

    async def call_as(
        self, principal: Principal, scope: AsgiScope, receive: Receive, send: Send
    ) -> None:
        request: Message = await receive()
        self.asked.append((principal, json.loads(request["body"])))
        assert scope["path"] == "/v1/chat/completions"
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        for n, piece in enumerate(self.pieces):
            last = n == len(self.pieces) - 1
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
            if self.hold:
                self.left = (await receive())["type"] == "http.disconnect"
                return


async def collect(chat: GatewayAppChat, app: str = "helper") -> list[AnswerEvent]:
    return [e async for e in chat.answer(ME, app, "How much rain?")]


def test_the_playground_asks_the_app_as_the_principal_and_reads_its_events() -> None:
    fake = FakeGateway([sse(delta("Rain"), LAST)[:20], sse(delta("Rain"), LAST)[20:]])
    chat = GatewayAppChat(lambda: fake)
    events = asyncio.run(collect(chat))
    assert events == [AnswerText("Rain"), DONE]
    principal, body = fake.asked[0]
    assert principal == ME
    assert body == {
        "model": "app:helper",
        "messages": [{"role": "user", "content": "How much rain?"}],
        "stream": True,
    }


def test_the_gateway_is_built_and_started_once() -> None:
    fake = FakeGateway([sse(LAST)])
    built: list[FakeGateway] = []

    def build() -> FakeGateway:
        built.append(fake)
        return fake

    chat = GatewayAppChat(build)

    async def twice() -> None:
        await asyncio.gather(collect(chat), collect(chat))
        await chat.aclose()

    asyncio.run(twice())
    assert len(built) == 1
    assert fake.started == 1


def test_a_refused_call_is_one_failed_event_and_an_odd_name_never_reaches_the_gateway() -> None:
    body = json.dumps({"error": {"message": "The model 'app:x' does not exist"}}).encode()
    fake = FakeGateway([body], status=404)
    chat = GatewayAppChat(lambda: fake)
    assert asyncio.run(collect(chat)) == [AnswerFailed(404, "The model 'app:x' does not exist")]
    assert asyncio.run(collect(chat, "helper@1"))[0] == AnswerFailed(404, "no app 'helper@1'")
    assert len(fake.asked) == 1


def test_a_reader_that_leaves_early_is_a_client_disconnect() -> None:
    first = b"data: " + json.dumps(delta("Rain")).encode() + b"\n\n"
    fake = FakeGateway([first, sse(LAST)], hold=True)
    chat = GatewayAppChat(lambda: fake)

    async def first_piece_only() -> AnswerEvent:
        events = chat.answer(ME, "helper", "How much rain?")
        first = await anext(events)
        await events.aclose()
        return first

    assert asyncio.run(first_piece_only()) == AnswerText("Rain")
    assert fake.left


class EchoGateway:
    """Answers any POST with what it was asked (path, principal, body), in two pieces."""

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def call_as(
        self, principal: Principal, scope: AsgiScope, receive: Receive, send: Send
    ) -> None:
        request: Message = await receive()
        asked = {"path": scope["path"], "who": principal.key_id, "got": json.loads(request["body"])}
        body = json.dumps(asked).encode()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body[:5], "more_body": True})
        await send({"type": "http.response.body", "body": body[5:], "more_body": False})


def test_a_whole_post_as_the_principal_gives_status_and_body() -> None:
    chat = GatewayAppChat(lambda: EchoGateway())
    status, body = asyncio.run(chat.post_as(ME, "/v1/embeddings", b'{"input": ["x"]}'))
    assert status == 201
    assert json.loads(body) == {"path": "/v1/embeddings", "who": ME.key_id, "got": {"input": ["x"]}}


def test_the_session_embedder_posts_on_the_loop_from_a_worker_thread() -> None:
    asked: list[tuple[str, Any]] = []

    async def post(path: str, body: bytes) -> tuple[int, bytes]:
        asked.append((path, json.loads(body)))
        if json.loads(body)["model"] == "down":
            return 503, b'{"error": {"message": "no replica"}}'
        vectors = [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]
        return 200, json.dumps({"data": vectors, "usage": {"prompt_tokens": 3}}).encode()

    embedder = SessionEmbedder(post)

    async def embed(model: str) -> Embedded:
        return await anyio.to_thread.run_sync(embedder.embed, model, ["a", "b"], None)

    assert anyio.run(embed, "m") == Embedded([[1.0, 0.0], [0.0, 1.0]], 3)
    assert asked[0] == (
        "/v1/embeddings",
        {"model": "m", "input": ["a", "b"], "encoding_format": "float"},
    )
    with pytest.raises(Unavailable, match="503"):
        anyio.run(embed, "down")
