"""The console's chat playground end to end: Chromium, the console, the gateway's app
pipeline in the API server's process, SmolLM2 on llama-server and all-MiniLM-L6-v2.

The session's live stack (live_engines.py) serves the models; this module starts one API
server (with the console) in a thread on the stack's database, and one browser. Tenant
``console-live`` has the apps ``helper`` and ``brief`` (one chunk, two tokens: the 8
streams at once cost little prefill) on the labelled document set (tests/data/kb).
Checked: the answer grows in the page in pieces before it ends, then the cited chunks
show, and the usage API and the ledger have the two rows of a gateway call (the model
call and the query's embedding, ``source = app:helper@1``); 8 playground streams at once
(httpx with a session cookie and the CSRF header) all answer, cite and are billed once
each; another tenant gets 404 for the app's pages and its stream, and does not list it.
SmolLM2's answers are poor: the tests check the path, never the answer's quality.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from gateway_stack import free_port
from live_engines import CHAT, EMBED, LiveEngines

from e2e.console_support import ConsoleUser, launch_browser, open_user
from suanwang.bootstrap import build_app
from suanwang.domain.apps import AppSettings
from suanwang.domain.knowledge import ChunkSettings
from suanwang.services.apps import AppSpec
from suanwang.services.knowledge import KnowledgeBaseSpec, Upload

DOCS = Path(__file__).resolve().parents[1] / "data" / "kb" / "docs"
TENANT, OTHER = "console-live", "console-live-b"
QUESTION = "How much rain falls in Harbor City in a typical year?"
ANSWERED_BY = "harbor-weather.md"
CONCURRENT = 8
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
WATCH_ANSWER = """() => {
  const answer = document.querySelector("[data-testid=answer]");
  window.answerLengths = [];
  new MutationObserver(() => window.answerLengths.push(answer.textContent.length))
    .observe(answer, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def console_url(live_engines: LiveEngines) -> Iterator[str]:
    """The API server with the console on the stack's database, in a thread of this process."""
    app = build_app(live_engines.stack.settings, control=False)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the console's server stopped"
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)
    app.state.platform.uows.engine.dispose()


@pytest.fixture(scope="module")
def helper(live_engines: LiveEngines) -> str:
    """Tenant console-live's key, and its app ``helper`` on the labelled documents."""
    key = live_engines.tenant(TENANT)
    platform = live_engines.platform
    me = platform.tenancy.authenticate(key)
    kb = platform.knowledge.create(me, KnowledgeBaseSpec("docs", "", ChunkSettings(200, 30), EMBED))
    for path in sorted(DOCS.iterdir()):
        platform.knowledge.upload(me, kb.id, Upload(path.name, path.read_bytes()), key)
    prompt = "You answer from the documents."
    settings = AppSettings(CHAT, prompt, (kb.id,), max_tokens=10, top_k=2, temperature=0.0)
    platform.apps.create(me, AppSpec("helper", settings))
    # "brief": the least prefill for 8 at once (one document in 60-character chunks, one
    # chunk given, a two-word prompt, two tokens answered)
    tiny = platform.knowledge.create(me, KnowledgeBaseSpec("tiny", "", ChunkSettings(60, 0), EMBED))
    harbor = DOCS / ANSWERED_BY
    platform.knowledge.upload(me, tiny.id, Upload(harbor.name, harbor.read_bytes()), key)
    brief = AppSettings(CHAT, "Answer briefly.", (tiny.id,), max_tokens=2, top_k=1)
    platform.apps.create(me, AppSpec("brief", brief))
    return key


def usage(base_url: str, key: str) -> dict[str, tuple[int, int]]:
    """(entries, prompt tokens) by model this month, from the usage API."""
    answer = httpx.get(
        f"{base_url}/api/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    answer.raise_for_status()
    totals = answer.json()["totals"]
    return {t["item"]: (t["entries"], t["prompt_tokens"]) for t in totals if t["kind"] == "tokens"}


def test_the_answer_streams_into_the_page_then_its_citations_and_two_rows_are_billed(
    browser: Any, console_url: str, helper: str, live_engines: LiveEngines
) -> None:
    before = len(live_engines.ledger(TENANT))
    before_usage = usage(console_url, helper)
    user = open_user(browser, console_url, helper)
    user.login()
    user.goto("/console/apps/helper/chat")
    user.page.evaluate(WATCH_ANSWER)
    user.page.fill("[data-testid=message]", QUESTION)
    user.page.click("[data-testid=send]")
    user.page.wait_for_selector("[data-testid=answer][data-state=done]", timeout=120_000)
    grown = sorted({n for n in user.page.evaluate("window.answerLengths") if n > 0})
    assert len(grown) >= 2, f"the answer arrived in one piece: {grown}"
    cited = user.page.locator("[data-testid=citations] li.citation")
    assert cited.count() >= 1
    assert cited.first.get_attribute("data-document") == ANSWERED_BY
    rows = live_engines.ledger(TENANT, count=before + 2)[before:]
    assert len(rows) == 2
    assert {r["source"] for r in rows} == {"app:helper@1"}
    assert sorted(str(r["model"]) for r in rows) == sorted([CHAT, EMBED])
    chat = next(r for r in rows if r["model"] == CHAT)
    shown = user.text("[data-testid=tokens]")
    assert f"{chat['prompt_tokens']}" in shown, (shown, chat)
    entries, prompt = before_usage.get(CHAT, (0, 0))
    after = usage(console_url, helper)
    assert after[CHAT] == (entries + 1, prompt + int(str(chat["prompt_tokens"])))
    assert after[EMBED][0] == before_usage.get(EMBED, (0, 0))[0] + 1
    assert {r["key_id"] for r in rows} == {
        live_engines.platform.tenancy.authenticate(helper).key_id
    }
    user.assert_clean()
    user.context.close()


def console_session(base_url: str, key: str) -> tuple[httpx.Client, str]:
    """An httpx client logged in to the console (session cookie), and its CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=300)
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    client.post("/console/login", data={"key": key, "csrf": token.group(1)})
    page = CSRF_INPUT.search(client.get("/console/apps").text)
    assert page is not None
    return client, page.group(1)


def stream(
    client: httpx.Client, csrf: str, app: str, question: str = QUESTION
) -> list[dict[str, Any]]:
    with client.stream(
        "POST",
        f"/console/apps/{app}/chat/stream",
        data={"message": question},
        headers={"X-CSRF-Token": csrf},
    ) as answer:
        if answer.status_code != 200:
            return [{"event": "status", "status": answer.status_code}]
        return [json.loads(line) for line in answer.iter_lines() if line]


def test_eight_playground_streams_at_once_all_answer_and_are_billed_once_each(
    console_url: str, helper: str, live_engines: LiveEngines
) -> None:
    before = len(live_engines.ledger(TENANT))
    client, csrf = console_session(console_url, helper)
    try:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            answers = list(
                pool.map(lambda _: stream(client, csrf, "brief", "Rain?"), range(CONCURRENT))
            )
    finally:
        client.close()
    for events in answers:
        assert events[-1]["event"] == "done", events[-1]
        assert any(e["event"] == "text" for e in events)
        assert events[-1]["citations"][0]["document"] == ANSWERED_BY
    rows = live_engines.ledger(TENANT, count=before + 2 * CONCURRENT)[before:]
    assert len(rows) == 2 * CONCURRENT
    assert {r["source"] for r in rows} == {"app:brief@1"}
    chats = [r for r in rows if r["model"] == CHAT]
    assert len({str(r["entry_id"]) for r in chats}) == CONCURRENT
    assert all(r["streamed"] for r in chats)
    embeds = {str(r["entry_id"]) for r in rows if r["model"] == EMBED}
    assert embeds == {f"{r['entry_id']}-e" for r in chats}
    billed = [e[-1]["prompt_tokens"] for e in answers]
    assert sorted(billed) == sorted(int(r["prompt_tokens"]) for r in chats)  # type: ignore[call-overload]


def test_another_tenant_cannot_open_chat_with_or_list_the_app(
    browser: Any, console_url: str, helper: str, live_engines: LiveEngines
) -> None:
    other = live_engines.tenant(OTHER)
    before = len(live_engines.ledger(OTHER))
    user: ConsoleUser = open_user(browser, console_url, other, lang="en")
    user.login()
    for path in ("/console/apps/helper", "/console/apps/helper/chat"):
        assert user.goto(path).status == 404
        assert user.page.locator("[data-testid=error]").count() == 1
    user.expected(404)
    user.goto("/console/apps")
    assert user.page.locator("[data-app=helper]").count() == 0
    user.assert_clean()
    user.context.close()
    client, csrf = console_session(console_url, other)
    try:
        assert stream(client, csrf, "helper") == [{"event": "status", "status": 404}]
    finally:
        client.close()
    time.sleep(0.5)
    assert len(live_engines.ledger(OTHER)) == before
