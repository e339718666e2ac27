"""Unicode normalisation (suanwang.corpus.normalize): cases and idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.corpus.normalize import NormalizeConfig, normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＡＢＣ１２３！", "ABC123!"),
        ("中文，标点：（括号）", "中文,标点:(括号)"),
        ("句号。顿号、书名号《》", "句号。顿号、书名号《》"),
        ("a\u3000b\u00a0c", "a b c"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("ctl\x00\x07\x1b[0m", "ctl[0m"),
        ("  line one  \r\n\r\n\r\n\r\n  line two\t\t", "line one\n\nline two"),
        ("ﬁ ligature ①", "fi ligature 1"),
    ],
)
def test_normalize_cases(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_fullwidth_without_nfkc() -> None:
    config = NormalizeConfig(nfkc=False)
    assert normalize("ＡＢＣ　１２", config) == "ABC 12"
    assert normalize("ﬁ", config) == "ﬁ"


@given(st.text(max_size=200))
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_no_controls_or_stray_whitespace_survive(text: str) -> None:
    out = normalize(text)
    assert out == out.strip()
    assert "\r" not in out
    assert "\t" not in out
    assert "\n\n\n" not in out
    assert all(c == "\n" or c >= " " for c in out)
