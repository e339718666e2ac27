"""The cleaning steps one by one (dedup, language, quality, LLM scoring) on small inputs."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from suanwang.corpus.dedup import ExactDedup, NearDedup, NearDedupConfig
from suanwang.corpus.documents import Doc, Kept, Removed
from suanwang.corpus.language import LanguageConfig, LanguageFilter
from suanwang.corpus.quality import QualityConfig, QualityFilter, check
from suanwang.corpus.scoring import LlmScorer, ScoringConfig

ZH = "上个月，成都市统计局启动了五十余家智慧停车场项目。据交通运输局介绍，停车场的使用人数稳步增长，群众满意度也随之提高。张老师表示，成都将继续推进城市绿道建设，让更多居民受益。"
EN = "Earlier this month, the transit authority in Denver opened the new light rail line. According to Maria Lopez, ridership has steadily increased since it began. Residents said the line made daily errands easier, although parking remains a problem."


def doc(text: str, doc_id: str = "d", language: str = "") -> Doc:
    return Doc(doc_id, text, {}, language)


def test_exact_dedup_keeps_the_first_copy() -> None:
    step = ExactDedup()
    assert isinstance(step.apply(doc(ZH, "a")), Kept)
    removed = step.apply(doc(ZH, "b"))
    assert isinstance(removed, Removed)
    assert removed.detail == "same text as a"
    assert isinstance(step.apply(doc(ZH + "。", "c")), Kept)


def test_near_dedup_catches_edits_and_keeps_distinct_text() -> None:
    step = NearDedup(NearDedupConfig(threshold=0.5))
    assert isinstance(step.apply(doc(ZH, "a")), Kept)
    edited = "点击上方蓝字关注我们\n" + ZH.replace("，", ",").replace("稳步", "逐步")
    outcome = step.apply(doc(edited, "b"))
    assert isinstance(outcome, Removed)
    assert outcome.reason == "near_duplicate"
    assert "with a" in outcome.detail
    assert isinstance(step.apply(doc(EN, "c")), Kept)
    other = "昨天下午，杭州图书馆举办了一场围棋比赛，吸引了一千多名棋迷参加。王先生每天坚持练习围棋，已经坚持了好几年。"
    assert isinstance(step.apply(doc(other, "d")), Kept)


@pytest.fixture(scope="module")
def language() -> LanguageFilter:
    return LanguageFilter(LanguageConfig())


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (ZH, "zh"),
        (EN, "en"),
        (
            "La mairie a annoncé l'ouverture d'une nouvelle bibliothèque dans le quartier nord.",
            "fr",
        ),
        ("市役所は新しい図書館を来月開館すると発表しました。", "ja"),
        ("!!! ### 123", "und"),
    ],
)
def test_language_detection(language: LanguageFilter, text: str, code: str) -> None:
    assert language.detect(text)[0] == code
    outcome = language.apply(doc(text))
    assert isinstance(outcome, Kept) == (code in ("zh", "en"))
    if isinstance(outcome, Kept):
        assert outcome.doc.language == code


@pytest.mark.parametrize(
    ("text", "language", "reason"),
    [
        (ZH, "zh", None),
        (EN, "en", None),
        ("好的,谢谢。", "zh", "too_short"),
        ("@#$%^&*()!@#$ ab %^&*(){}[]|\\:;<>?/~`" * 3, "en", "symbol_ratio"),
        ("Results ... more ... and more ... # tags # here ... ok " * 3, "en", "symbol_ratio"),
        ("\n".join(["The same line repeats here again."] * 6) + "\n" + EN, "en", "duplicate_lines"),
        (
            "2024 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 twenty one " * 3,
            "en",
            "alpha_tokens",
        ),
        ("buy now " * 40, "en", "top_ngram"),
        (EN + " " + EN[:120], "en", "duplicate_ngrams"),
        (ZH + ZH[:60], "zh", "duplicate_ngrams"),
        (EN + " Lorem ipsum dolor sit amet.", "en", "lorem_ipsum"),
    ],
)
def test_quality_rules(text: str, language: str, reason: str | None) -> None:
    failed = check(doc(text, language=language), QualityConfig())
    assert (failed[0] if failed else None) == reason


def test_quality_rule_can_be_disabled() -> None:
    text = EN + " Lorem ipsum dolor sit amet."
    config = QualityConfig(disabled=frozenset({"lorem_ipsum"}))
    assert isinstance(QualityFilter(config).apply(doc(text, language="en")), Kept)


def scorer(handler: httpx.MockTransport, **overrides: object) -> LlmScorer:
    config = ScoringConfig(base_url="http://gw/v1", api_key="sk-test", model="m", **overrides)  # type: ignore[arg-type]
    return LlmScorer(config, transport=handler)


def test_scoring_keeps_scores_at_threshold_and_counts_failures() -> None:
    seen: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        text = body["messages"][1]["content"]
        assert request.headers["authorization"] == "Bearer sk-test"
        assert request.url.path == "/v1/chat/completions"
        if text.startswith("boom"):
            return httpx.Response(503, text="engine down")
        if text.startswith("chatty"):
            return httpx.Response(200, json={"choices": [{"message": {"content": "I think so"}}]})
        score = text[0]
        return httpx.Response(200, json={"choices": [{"message": {"content": f" {score}."}}]})

    step = scorer(httpx.MockTransport(answer), threshold=3)
    docs = [doc(t, str(i)) for i, t in enumerate(["4 good", "3 fine", "2 poor", "boom", "chatty"])]
    outcomes = step.apply_batch(docs)
    step.close()
    assert [type(o).__name__ for o in outcomes] == ["Kept", "Kept", "Removed", "Kept", "Kept"]
    assert isinstance(outcomes[2], Removed)
    assert outcomes[2].reason == "low_llm_score"
    assert outcomes[3].changes == (("score_failed", 1),)  # type: ignore[union-attr]
    assert "HTTP 503" in outcomes[3].note  # type: ignore[union-attr]
    assert "no score" in outcomes[4].note  # type: ignore[union-attr]
    assert {b["model"] for b in seen} == {"m"}
    assert all(b["response_format"]["type"] == "json_schema" for b in seen)
    assert len(seen) == 5


def test_scoring_failures_can_drop_and_timeouts_are_failures() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    step = scorer(httpx.MockTransport(answer), on_failure="drop")
    [outcome] = step.apply_batch([doc("x")])
    step.close()
    assert isinstance(outcome, Removed)
    assert outcome.reason == "score_failed"
    assert "ReadTimeout" in outcome.detail


def test_scoring_concurrency_is_bounded() -> None:
    lock, live, peak = threading.Lock(), [0], [0]

    def answer(request: httpx.Request) -> httpx.Response:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.02)
        with lock:
            live[0] -= 1
        return httpx.Response(200, json={"choices": [{"message": {"content": "5"}}]})

    step = scorer(httpx.MockTransport(answer), max_concurrency=3)
    outcomes = step.apply_batch([doc(f"t{i}", str(i)) for i in range(12)])
    step.close()
    assert all(isinstance(o, Kept) for o in outcomes)
    assert peak[0] == 3
