"""Apps in the domain: the model-string grammar, the checks naming their field, the prompt
built from retrieved chunks and the citations (issue 15, point 2)."""

from __future__ import annotations

import pytest

from suanwang.domain.apps import (
    App,
    AppChange,
    AppSettings,
    app_messages,
    citations,
    kept_hits,
    parse_app_model,
    query_of,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.knowledge import Hit, RetrievalMode
from suanwang.services.app_templates import templates


def hit(doc: str, score: float, text: str = "fact") -> Hit:
    return Hit(f"doc_{doc}:0", f"doc_{doc}", f"{doc}.md", 0, text, score)


@pytest.mark.parametrize(
    ("model", "parsed"),
    [
        ("app:tutor", ("tutor", None)),
        ("app:tutor@3", ("tutor", 3)),
        ("app:a.b_c-d@12", ("a.b_c-d", 12)),
        ("app:Tutor", None),
        ("app:tutor@0", None),
        ("app:tutor@", None),
        ("app:", None),
        ("app:../x", None),
        ("smollm2-135m-instruct", None),
    ],
)
def test_model_strings(model: str, parsed: tuple[str, int | None] | None) -> None:
    assert parse_app_model(model) == parsed


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"system_prompt": "  "}, "system_prompt"),
        ({"system_prompt": "x" * 8001}, "system_prompt"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 21}, "top_k"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"knowledge_bases": tuple(f"kb{i}" for i in range(6))}, "knowledge_bases"),
    ],
)
def test_bad_settings_name_their_field(fields: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"model": "m", "system_prompt": "Be brief."} | fields
    with pytest.raises(ValidationError) as caught:
        AppSettings(**values)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_change_keeps_what_it_does_not_set_and_is_checked_again() -> None:
    v1 = AppSettings("m", "Be brief.", ("kb_1",), temperature=0.2, top_k=4)
    v2 = AppChange(system_prompt="Be kind.", score_floor=None).applied_to(v1)
    assert (v2.system_prompt, v2.knowledge_bases, v2.temperature, v2.top_k) == (
        "Be kind.",
        ("kb_1",),
        0.2,
        4,
    )
    with pytest.raises(ValidationError):
        AppChange(system_prompt="").applied_to(v1)


def test_messages_put_the_prompt_and_a_numbered_context_first() -> None:
    asked = [{"role": "user", "content": "old"}, {"role": "user", "content": "When?"}]
    sent = app_messages("You tutor.", [hit("a", 0.9, "Test on Friday."), hit("b", 0.5)], asked)
    assert sent[0]["role"] == "system"
    assert sent[0]["content"].startswith("You tutor.")
    assert "[1] (a.md) Test on Friday." in sent[0]["content"]
    assert "[2] (b.md) fact" in sent[0]["content"]
    assert sent[1:] == asked
    assert app_messages("You tutor.", [], asked)[0]["content"] == "You tutor."
    assert query_of(asked) == "When?"
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert query_of(parts) == "a\nb"
    assert query_of([{"role": "system", "content": "x"}]) == ""


def test_citations_and_the_score_floor() -> None:
    hits = [hit("a", 0.9, "x" * 500), hit("b", 0.2)]
    cited = citations(kept_hits(hits, 0.5))
    assert [c["document"] for c in cited] == ["a.md"]
    assert cited[0] == {
        "index": 1,
        "document": "a.md",
        "document_id": "doc_a",
        "chunk_id": "doc_a:0",
        "score": 0.9,
        "text": "x" * 300,
    }
    assert len(kept_hits(hits, None)) == 2


def test_sharing_is_within_the_tenant_only() -> None:
    def app(shared: tuple[str, ...]) -> App:
        return App("app_1", "aaa", "t", "", 1, 1, shared, None, 0.0, 0.0)

    assert app(()).usable_by("aaa", "k1")
    assert not app(()).usable_by("bbb", "k1")
    assert app(("k1",)).usable_by("aaa", "k1")
    assert not app(("k1",)).usable_by("aaa", "k2")
    assert not app(("k1",)).usable_by("bbb", "k1")


def test_packaged_templates_parse() -> None:
    found = templates()
    assert {
        "education-tutor",
        "hospital-assistant",
        "weather-briefing",
        "securities-research",
    } <= set(found)
    for tpl in found.values():
        assert tpl.settings.retrieval_mode is RetrievalMode.HYBRID
        assert set(tpl.title) == {"en", "zh"}
        assert all(tpl.document(d).strip() for d in tpl.documents)
        assert any(not s.question.isascii() for s in tpl.samples)  # a Chinese question


def test_cli_lists_templates_and_refuses_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    from suanwang.cli.main import exit_code

    assert exit_code(["apps", "templates", "--json"]) == 0
    listed = capsys.readouterr().out
    assert "education-tutor" in listed
    assert "securities-research" in listed
    assert exit_code(["apps", "create", "--from-template", "no-such-template"]) == 1
    error = capsys.readouterr().err
    assert "no app template 'no-such-template'" in error
    assert "education-tutor" in error  # the hint names the real ones
