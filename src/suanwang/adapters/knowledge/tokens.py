"""Word segmentation for the keyword index: jieba for Chinese, plain words for the rest.

Both the indexed chunks and the queries go through :meth:`Segmenter.terms`, so a Chinese
phrase indexed as ``北京 大学`` is found by a query that jieba cuts the same way. FTS5's
``porter unicode61`` tokenizer then stems the English words.
"""

from __future__ import annotations

import logging
import re

import jieba  # type: ignore[import-untyped]

_WORD = re.compile(r"\w", re.UNICODE)
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "do",
        "does",
        "did",
        "many",
        "much",
        "it",
        "its",
        "that",
        "this",
        "with",
        "from",
        "as",
        "的",
        "了",
        "是",
        "在",
        "和",
        "与",
        "及",
        "吗",
        "呢",
        "吧",
        "啊",
        "什么",
        "多少",
        "哪",
        "哪个",
        "哪里",
        "哪些",
        "几",
        "谁",
        "如何",
        "怎么",
        "怎样",
        "请问",
        "一个",
        "有",
        "为",
        "对",
        "中",
        "上",
        "下",
        "个",
    }
)


class Segmenter:
    """A jieba tokenizer of its own (jieba's module-level one is shared global state)."""

    def __init__(self) -> None:
        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()

    def terms(self, text: str) -> list[str]:
        """Search terms of ``text``: lower-cased words (Chinese cut for search), no
        punctuation, no stop words."""
        out: list[str] = []
        for word in self._jieba.cut_for_search(text.lower()):
            word = word.strip()
            if word and _WORD.search(word) and word not in STOPWORDS:
                out.append(word)
        return out

    def index_text(self, text: str) -> str:
        return " ".join(self.terms(text))

    def match_expression(self, query: str) -> str | None:
        """An FTS5 MATCH expression: any of the query's terms (quoted), None if none."""
        terms = dict.fromkeys(self.terms(query))
        quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
        return " OR ".join(quoted) if quoted else None
