"""The console's apps pages and chat playground over HTTP, without a browser or a model.

One server per module (SQLite), tenants ``aaa`` and ``bbb``; the playground's
:class:`~suanwang.ports.AppChat` is a fake here (the real one, through the gateway's
pipeline to SmolLM2, is driven by tests/integration/test_console_apps_live.py). What is
checked: creating an app from a template (inline 422s, nothing half-saved), versions,
publish, sharing (a bad key: 422 inline), delete, the streamed and the whole answer
(escaped), CSRF on the stream, and a hostile tenant that finds another's app nowhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.app_chat import AnswerDone, AnswerEvent, AnswerText, Citation
from suanwang.domain.apps import AppChange
from suanwang.domain.errors import ValidationError
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.app_templates import instantiate_keyword, template
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')
HOSTILE = "<script>alert(1)</script>"
CITED = Citation(1, "homework-policy.md", "doc_1", "chk_1", 0.25, "Late homework loses 10%.")


@dataclass
class FakeChat:
    """Answers every question with two pieces (the second hostile HTML) and one citation."""

    asked: list[tuple[Principal, str, str]] = field(default_factory=list)

    async def answer(
        self, principal: Principal, app: str, question: str
    ) -> AsyncGenerator[AnswerEvent, None]:
        self.asked.append((principal, app, question))
        yield AnswerText("Late work ")
        yield AnswerText(HOSTILE)
        yield AnswerDone((CITED,), 40, 2)

    async def aclose(self) -> None:
        pass


@dataclass
class Console:
    app: Any
    platform: Platform
    chat: FakeChat
    keys: dict[str, str]
    key_ids: dict[str, str]


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console-apps")
    settings = Settings(data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'db.sqlite'}")
    app = build_app(settings, control=False)
    platform: Platform = app.state.platform
    chat = FakeChat()
    app.state.app_chat = chat
    keys, ids = {}, {}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        for scope in (Scope.TENANT_ADMIN, Scope.TENANT_MEMBER):
            new = platform.tenancy.create_key(
                OP, tenant=tenant, scope=scope, name=scope.value, expires_in_s=None
            )
            who = tenant if scope is Scope.TENANT_ADMIN else f"{tenant}-member"
            keys[who], ids[who] = new.secret, new.record.id
    yield Console(app, platform, chat, keys, ids)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def login(console: Console, who: str) -> tuple[TestClient, str]:
    """A client with a session, and its CSRF token."""
    client = TestClient(console.app)
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    answer = client.post(
        "/console/login",
        data={"key": console.keys[who], "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = CSRF_INPUT.search(client.get("/console/apps").text)
    assert page is not None
    return client, page.group(1)


@pytest.fixture(scope="module")
def tutor(console: Console) -> str:
    """Tenant aaa's app ``tutor``, made from the education template through the form."""
    client, csrf = login(console, "aaa")
    made = client.post(
        "/console/apps",
        data={"template": "education-tutor", "name": "tutor", "csrf": csrf},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/console/apps/tutor?created=1"
    return "tutor"


def test_an_app_made_from_a_template_has_its_base_documents_and_first_version(
    console: Console, tutor: str
) -> None:
    client, _ = login(console, "aaa")
    page = client.get(f"/console/apps/{tutor}?created=1")
    assert page.status_code == 200
    assert 'data-testid="created"' in page.text
    assert 'data-version="1"' in page.text
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    detail = console.platform.apps.get(me, tutor)
    assert detail.app.template == "education-tutor"
    assert [kb.name for kb in detail.bases] == ["tutor-kb"]
    assert len(console.platform.knowledge.documents(me, detail.bases[0].id)) == 3
    listing = client.get("/console/apps").text
    assert 'data-app="tutor" data-sharing="app_shared_all"' in listing


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"template": "education-tutor", "name": "Bad Name!"}, "name"),
        ({"template": "no-such-template", "name": "fine"}, "template"),
        ({"template": "education-tutor", "name": ""}, "name"),
        ({"template": "education-tutor", "name": "tutor"}, "name"),  # exists
    ],
)
def test_a_bad_create_form_is_422_inline_and_saves_nothing(
    console: Console, tutor: str, form: dict[str, str], field: str
) -> None:
    client, csrf = login(console, "aaa")
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    before = (console.platform.apps.visible(me), console.platform.knowledge.visible(me))
    answer = client.post("/console/apps", data=form | {"csrf": csrf})
    assert answer.status_code == 422
    assert f'data-error-for="{field}"' in answer.text
    assert (console.platform.apps.visible(me), console.platform.knowledge.visible(me)) == before


def test_publish_sharing_and_a_refused_key(console: Console, tutor: str) -> None:
    client, csrf = login(console, "aaa")
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    console.platform.apps.update(me, tutor, AppChange(top_k=2))
    page = client.get(f"/console/apps/{tutor}").text
    assert 'data-version="2"' in page
    back = client.post(f"/console/apps/{tutor}/publish", data={"version": "1", "csrf": csrf})
    assert back.status_code == 200
    assert console.platform.apps.get(me, tutor).app.published == 1
    member = console.key_ids["aaa-member"]
    shared = client.post(f"/console/apps/{tutor}/sharing", data={"key_ids": member, "csrf": csrf})
    assert shared.status_code == 200
    assert console.platform.apps.get(me, tutor).app.shared_keys == (member,)
    assert 'data-sharing="app_shared_not_you"' in client.get("/console/apps").text
    foreign = console.key_ids["bbb"]
    refused = client.post(f"/console/apps/{tutor}/sharing", data={"key_ids": foreign, "csrf": csrf})
    assert refused.status_code == 422
    assert 'data-error-for="key_ids"' in refused.text
    assert console.platform.apps.get(me, tutor).app.shared_keys == (member,)
    everyone = client.post(f"/console/apps/{tutor}/sharing", data={"csrf": csrf})
    assert everyone.status_code == 200
    assert console.platform.apps.get(me, tutor).app.shared_keys == ()


def test_the_playground_streams_events_and_without_js_renders_the_escaped_answer(
    console: Console, tutor: str
) -> None:
    client, csrf = login(console, "aaa-member")
    assert client.get(f"/console/apps/{tutor}/chat").status_code == 200
    streamed = client.post(
        f"/console/apps/{tutor}/chat/stream",
        data={"message": "Late homework?"},
        headers={"X-CSRF-Token": csrf},
    )
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in streamed.text.splitlines()]
    assert [e["event"] for e in events] == ["text", "text", "done"]
    assert events[1]["text"] == HOSTILE
    assert events[2]["citations"][0]["document"] == "homework-policy.md"
    principal, app, question = console.chat.asked[-1]
    assert (principal.key_id, app, question) == (
        console.key_ids["aaa-member"],
        tutor,
        "Late homework?",
    )
    whole = client.post(f"/console/apps/{tutor}/chat", data={"message": "Late?", "csrf": csrf})
    assert whole.status_code == 200
    assert HOSTILE not in whole.text
    assert "Late work &lt;script&gt;alert(1)&lt;/script&gt;" in whole.text
    assert 'data-document="homework-policy.md"' in whole.text
    empty = client.post(f"/console/apps/{tutor}/chat", data={"message": " ", "csrf": csrf})
    assert empty.status_code == 422
    assert 'data-error-for="message"' in empty.text


def test_every_write_needs_the_csrf_token(console: Console, tutor: str) -> None:
    client, _ = login(console, "aaa")
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    asked, app = len(console.chat.asked), console.platform.apps.get(me, tutor).app
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        writes = [
            client.post(
                f"/console/apps/{tutor}/chat/stream", data={"message": "hi"}, headers=headers
            ),
            client.post(f"/console/apps/{tutor}/chat", data={"message": "hi"}, headers=headers),
            client.post(f"/console/apps/{tutor}/delete", headers=headers),
            client.post(f"/console/apps/{tutor}/publish", data={"version": "1"}, headers=headers),
            client.post(f"/console/apps/{tutor}/sharing", data={"key_ids": "x"}, headers=headers),
            client.post("/console/apps", data={"template": "weather-briefing", "name": "x"}),
        ]
        assert [w.status_code for w in writes] == [403] * len(writes)
    assert len(console.chat.asked) == asked
    assert console.platform.apps.get(me, tutor).app == app
    assert "x" not in {a.name for a in console.platform.apps.visible(me)}


def test_another_tenant_finds_the_app_nowhere(console: Console, tutor: str) -> None:
    client, csrf = login(console, "bbb")
    listing = client.get("/console/apps").text
    assert 'data-app="tutor"' not in listing
    assert "app:tutor" not in listing
    asked = len(console.chat.asked)
    pages = [
        client.get(f"/console/apps/{tutor}"),
        client.get(f"/console/apps/{tutor}/chat"),
        client.post(f"/console/apps/{tutor}/chat", data={"message": "hi", "csrf": csrf}),
        client.post(
            f"/console/apps/{tutor}/chat/stream",
            data={"message": "hi"},
            headers={"X-CSRF-Token": csrf},
        ),
        client.post(f"/console/apps/{tutor}/publish", data={"version": "1", "csrf": csrf}),
        client.post(f"/console/apps/{tutor}/sharing", data={"csrf": csrf}),
        client.post(f"/console/apps/{tutor}/delete", data={"csrf": csrf}),
    ]
    assert [p.status_code for p in pages] == [404] * len(pages)
    assert len(console.chat.asked) == asked
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    assert console.platform.apps.get(me, tutor).app.name == tutor


def test_a_member_reads_but_cannot_change_an_app(console: Console, tutor: str) -> None:
    client, csrf = login(console, "aaa-member")
    page = client.get(f"/console/apps/{tutor}").text
    assert 'data-testid="sharing-form"' not in page
    assert 'data-testid="app-form"' not in client.get("/console/apps").text
    refused = client.post(f"/console/apps/{tutor}/delete", data={"csrf": csrf})
    assert refused.status_code == 403


def test_delete_with_its_base_removes_both(console: Console, tmp_path: Path) -> None:
    client, csrf = login(console, "aaa")
    made = client.post(
        "/console/apps",
        data={"template": "weather-briefing", "name": "wx", "csrf": csrf},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    gone = client.post(
        "/console/apps/wx/delete",
        data={"with_knowledge_bases": "1", "csrf": csrf},
        follow_redirects=False,
    )
    assert gone.status_code == 303
    me = console.platform.tenancy.authenticate(console.keys["aaa"])
    assert "wx" not in {a.name for a in console.platform.apps.visible(me)}
    assert "wx-kb" not in {kb.name for kb in console.platform.knowledge.visible(me)}
    assert client.get("/console/apps/wx").status_code == 404


def test_a_template_that_fails_at_its_last_step_leaves_no_base(console: Console) -> None:
    """The app's create refuses (not a chat model) after the base and documents were made."""
    me = console.platform.tenancy.authenticate(console.keys["bbb"])
    tpl = template("weather-briefing")
    broken = replace(tpl, settings=replace(tpl.settings, model="all-minilm-l6-v2"))
    with pytest.raises(ValidationError) as refused:
        instantiate_keyword(console.platform.apps, console.platform.knowledge, me, broken, "wx2")
    assert refused.value.field == "model"
    assert "wx2-kb" not in {kb.name for kb in console.platform.knowledge.visible(me)}
    assert "wx2" not in {a.name for a in console.platform.apps.visible(me)}
