"""Apps through the real gateway and engines (issue 15, points 2-4).

The session's live stack (live_engines.py: SmolLM2-135M on llama-server, all-MiniLM-L6-v2,
one gateway process) serves ``model="app:<name>"``. SmolLM2's answers are poor, so these
tests check retrieval, citations, metering, versions, templates and isolation, never the
answer's quality; requests ask for a few tokens only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from live_engines import CHAT, EMBED, OP, LiveEngines

from suanwang.adapters.http.app import create_app
from suanwang.cli.app_template import instantiate
from suanwang.cli.client import CliError, problem_error
from suanwang.domain.apps import AppChange, AppSettings
from suanwang.domain.knowledge import ChunkSettings
from suanwang.domain.tenancy import Scope
from suanwang.observability import Metrics
from suanwang.services.app_templates import templates
from suanwang.services.apps import AppSpec
from suanwang.services.knowledge import KnowledgeBaseSpec, Upload

DOCS = Path(__file__).resolve().parents[1] / "data" / "kb" / "docs"
ASKED = {
    "Who heads the heart department at Riverside?": "riverside-hospital.md",
    "How much rain falls in Harbor City in a typical year?": "harbor-weather.md",
    "What commission does Northstar Securities charge on stock trades?": "northstar-securities.md",
}
TENANT = "apps-live"
CONCURRENT = 8
CACHE_S = 1.2
"""Past the gateway's app cache (1 s): a publish is seen by the next call."""


def chat(live: LiveEngines, key: str, model: str, question: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": 4}
    return httpx.post(
        f"{live.gateway_url}/chat/completions",
        json=body | extra,
        headers={"Authorization": f"Bearer {key}"},
        timeout=300,
    )


def streamed(live: LiveEngines, key: str, model: str, question: str) -> list[dict[str, Any]]:
    answer = chat(live, key, model, question, stream=True)
    assert answer.status_code == 200, answer.text
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.fixture(scope="module")
def helper(live_engines: LiveEngines) -> str:
    """Tenant ``apps-live``'s app ``helper`` on the labelled document set (hybrid)."""
    key = live_engines.tenant(TENANT)
    platform = live_engines.platform
    me = platform.tenancy.authenticate(key)
    small = ChunkSettings(200, 30)  # a short context: the engine's prefill is the cost here
    kb = platform.knowledge.create(me, KnowledgeBaseSpec("docs", "", small, EMBED))
    for path in sorted(DOCS.iterdir()):
        platform.knowledge.upload(me, kb.id, Upload(path.name, path.read_bytes()), key)
    settings = AppSettings(CHAT, "You answer from the documents.", (kb.id,), max_tokens=4, top_k=2)
    platform.apps.create(me, AppSpec("helper", settings))
    return key


def test_app_answers_cite_the_right_document_and_are_metered(
    live_engines: LiveEngines, helper: str
) -> None:
    """One question answered by exactly one document (the concurrent test asks all)."""
    before = len(live_engines.ledger(TENANT))
    question, document = next(iter(ASKED.items()))
    answer = chat(live_engines, helper, "app:helper", question)
    assert answer.status_code == 200, answer.text
    cited = answer.json()["citations"]
    assert cited[0]["document"] == document, (question, cited)
    assert {"document", "document_id", "chunk_id", "score", "text", "index"} <= set(cited[0])
    rows = live_engines.ledger(TENANT, count=before + 2)[before:]
    assert {r["source"] for r in rows} == {"app:helper@1"}
    by_model = {m: [r for r in rows if r["model"] == m] for m in (CHAT, EMBED)}
    assert len(by_model[CHAT]) == len(by_model[EMBED]) == 1
    assert all(int(r["prompt_tokens"]) > 0 for r in rows)  # type: ignore[call-overload]
    assert {r["endpoint"] for r in by_model[EMBED]} == {"embeddings"}
    assert answer.json()["usage"]["prompt_tokens"] == by_model[CHAT][0]["prompt_tokens"]


def test_concurrent_app_calls_all_cite_and_bill_once(
    live_engines: LiveEngines, helper: str
) -> None:
    before = len(live_engines.ledger(TENANT))
    questions = list(ASKED) * 3

    def one(i: int) -> list[dict[str, Any]]:
        question = questions[i]
        if i % 2:
            return list(streamed(live_engines, helper, "app:helper", question)[-1]["citations"])
        answer = chat(live_engines, helper, "app:helper", question)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["citations"])

    with ThreadPoolExecutor(CONCURRENT) as pool:
        cited = list(pool.map(one, range(CONCURRENT)))
    for i, citations in enumerate(cited):
        assert citations[0]["document"] == ASKED[questions[i]], citations
    rows = live_engines.ledger(TENANT, count=before + 2 * CONCURRENT)[before:]
    assert len(rows) == 2 * CONCURRENT  # one chat row and one embedding row per call
    chats = [r for r in rows if r["model"] == CHAT]
    assert len({str(r["entry_id"]) for r in chats}) == CONCURRENT
    embeds = {str(r["entry_id"]) for r in rows if r["model"] == EMBED}
    assert embeds == {f"{r['entry_id']}-e" for r in chats}
    assert sum(bool(r["streamed"]) for r in chats) == CONCURRENT // 2


def test_the_official_openai_client_reads_citations(live_engines: LiveEngines, helper: str) -> None:
    client = openai.OpenAI(base_url=live_engines.gateway_url, api_key=helper, max_retries=0)
    question = next(iter(ASKED))
    answer = client.chat.completions.create(
        model="app:helper", messages=[{"role": "user", "content": question}], max_tokens=4
    )
    assert answer.model_extra is not None
    assert answer.model_extra["citations"][0]["document"] == ASKED[question]
    chunks = list(
        client.chat.completions.create(
            model="app:helper",
            messages=[{"role": "user", "content": question}],
            max_tokens=4,
            stream=True,
        )
    )
    last = chunks[-1]
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0
    assert getattr(last, "citations")[0]["document"] == ASKED[question]  # noqa: B009
    assert all(getattr(c, "citations", None) is None for c in chunks[:-1])


def test_publishing_an_old_version_is_what_calls_use(live_engines: LiveEngines) -> None:
    """The engine's prompt count shows which system prompt it was sent: v2's is long."""
    key = live_engines.tenant(TENANT)
    me = live_engines.platform.tenancy.authenticate(key)
    apps = live_engines.platform.apps
    apps.create(me, AppSpec("versioned", AppSettings(CHAT, "Be brief.", max_tokens=2)))
    long_prompt = "You are a careful assistant. " * 20
    assert apps.update(me, "versioned", AppChange(system_prompt=long_prompt)).version.version == 2

    def prompt_tokens(model: str) -> int:
        answer = chat(live_engines, key, model, "Hi")
        assert answer.status_code == 200, answer.text
        return int(answer.json()["usage"]["prompt_tokens"])

    time.sleep(CACHE_S)
    v2 = prompt_tokens("app:versioned")
    assert v2 > 100
    apps.publish(me, "versioned", 1)
    time.sleep(CACHE_S)
    v1 = prompt_tokens("app:versioned")
    assert v1 < 60
    assert prompt_tokens("app:versioned@2") == v2
    assert prompt_tokens("app:versioned@1") == v1


def test_other_tenants_and_unshared_keys_get_the_unknown_model_404(
    live_engines: LiveEngines, helper: str
) -> None:
    stranger = live_engines.tenant("apps-stranger")
    answers = {
        model: chat(live_engines, stranger, model, "Who heads the heart department?")
        for model in ("app:helper", "app:no-such-app", "app:helper@9", "no-such-model")
    }
    bodies = set()
    for model, answer in answers.items():
        assert answer.status_code == 404, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        bodies.add(error["message"].replace(repr(model), "M"))
    assert len(bodies) == 1
    assert "citations" not in answers["app:helper"].text
    # restricted to another key of the same tenant: the first key no longer sees it
    platform = live_engines.platform
    second = platform.tenancy.create_key(
        OP, tenant=TENANT, scope=Scope.TENANT_MEMBER, name="second", expires_in_s=None
    )
    me = platform.tenancy.authenticate(helper)
    platform.apps.share(me, "helper", [second.record.id])
    try:
        time.sleep(CACHE_S)
        assert chat(live_engines, helper, "app:helper", "Hi").status_code == 404
        assert chat(live_engines, second.secret, "app:helper", "Hi").status_code == 200
    finally:
        platform.apps.share(me, "helper", [])


class InProcessApi:
    """The CLI's ``ApiClient.call`` over a TestClient (what ``instantiate`` uses)."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, path, **kwargs)
        if response.is_error:
            raise problem_error(response, has_key=True)
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def admin_api(live_engines: LiveEngines) -> Iterator[tuple[InProcessApi, str]]:
    """The REST API on the live platform (in process), with a tenant admin key."""
    platform = live_engines.platform
    platform.tenancy.create_tenant("apps-templates", "apps-templates", {})
    made = platform.tenancy.create_key(
        OP, tenant="apps-templates", scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
    )
    with TestClient(create_app(platform, Metrics())) as client:
        client.headers["Authorization"] = f"Bearer {made.secret}"
        yield InProcessApi(client), made.secret


@pytest.mark.parametrize("name", sorted(templates()))
def test_each_template_instantiates_answers_and_is_deleted(
    live_engines: LiveEngines, admin_api: tuple[InProcessApi, str], name: str
) -> None:
    api, key = admin_api
    tpl = templates()[name]
    app = instantiate(api, tpl, f"my-{name}", quiet=True)
    assert app["template"] == name
    assert [b["name"] for b in app["bases"]] == [f"my-{name}-kb"]
    # one question each (the engine's time is the cost): English for two, Chinese for two
    sample = tpl.samples[0] if sorted(templates()).index(name) % 2 else tpl.samples[-1]
    answer = chat(live_engines, key, f"app:my-{name}", sample.question)
    assert answer.status_code == 200, answer.text
    assert answer.json()["citations"][0]["document"] == sample.document, sample
    gone = api.call("DELETE", f"/api/v1/apps/my-{name}", params={"with_knowledge_bases": "true"})
    assert [k["name"] for k in gone["deleted_knowledge_bases"]] == [f"my-{name}-kb"]
    kb_names = {k["name"] for k in api.call("GET", "/api/v1/knowledge-bases")}
    assert f"my-{name}-kb" not in kb_names
    assert f"my-{name}" not in {a["name"] for a in api.call("GET", "/api/v1/apps")}
    principal = live_engines.platform.tenancy.authenticate(key)
    assert live_engines.platform.knowledge.owned(principal, app["bases"][0]["id"]) is None


def test_a_failed_instantiation_leaves_nothing(
    live_engines: LiveEngines, admin_api: tuple[InProcessApi, str]
) -> None:
    api, _ = admin_api
    tpl = templates()["education-tutor"]
    with pytest.raises(CliError, match="model"):
        instantiate(api, tpl, "broken", model="no-such-model", embedding_model="none", quiet=True)
    assert "broken-kb" not in {k["name"] for k in api.call("GET", "/api/v1/knowledge-bases")}
