"""Step 6: heuristic quality filters (pure), after Gopher and C4.

Rules and default thresholds (each one can be changed or switched off in the config):

- ``too_short``: fewer non-space characters than ``min_chars`` for the document's language
  (zh 30, en 100: a Chinese character carries about as much as an English word; Gopher keeps
  documents of 50-100,000 words);
- ``symbol_ratio``: share of non-space characters that are neither letters nor digits above
  0.30, or ``#`` and ``...``/``…`` per token above 0.10 (Gopher's symbol-to-word rule);
- ``alpha_tokens``: fewer than 80 % of tokens containing a letter (Gopher);
- ``duplicate_lines``: more than 30 % of lines, or lines holding more than 20 % of the
  characters, are repeats of an earlier line (Gopher, Rae et al. 2021, Table A1);
- ``top_ngram``: the most frequent 2/3/4-gram covers more than 20/18/16 % of the characters;
- ``duplicate_ngrams``: tokens inside 5..10-grams that occur more than once cover more than
  15/14/13/12/11/10 % of the characters (Gopher);
- ``lorem_ipsum``: the placeholder text (C4, Raffel et al. 2020, section 2.2).

Tokens are each Han/kana/hangul character and each run of other letters or digits, so the
same rules apply to Chinese without segmentation. Rae et al., "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", arXiv:2112.11446, appendix A.1.1;
Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer", JMLR 21 (2020).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from suanwang.corpus.documents import Doc, Kept, Outcome, Removed

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
TOP_NGRAM_MAX = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAM_MAX = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds; a rule whose name is in ``disabled`` is not applied."""

    min_chars: tuple[tuple[str, int], ...] = (("zh", 30), ("en", 100))
    default_min_chars: int = 50
    max_symbol_ratio: float = 0.30
    max_hash_ellipsis_ratio: float = 0.10
    min_alpha_token_ratio: float = 0.80
    max_duplicate_line_ratio: float = 0.30
    max_duplicate_line_char_ratio: float = 0.20
    top_ngram_max: tuple[tuple[int, float], ...] = tuple(TOP_NGRAM_MAX.items())
    duplicate_ngram_max: tuple[tuple[int, float], ...] = tuple(DUP_NGRAM_MAX.items())
    disabled: frozenset[str] = field(default_factory=frozenset)


def tokens(text: str) -> list[str]:
    """Word-like tokens: single CJK characters and runs of other letters or digits."""
    return _TOKEN.findall(text)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the rules measure, computed once per document."""

    doc: Doc
    tokens: list[str]
    token_chars: int

    @classmethod
    def of(cls, doc: Doc) -> _Facts:
        found = tokens(doc.text)
        return cls(doc, found, sum(len(t) for t in found))


def check(doc: Doc, config: QualityConfig) -> tuple[str, str] | None:
    """The first rule ``doc`` fails as ``(reason, detail)``, or None if it passes all."""
    facts = _Facts.of(doc)
    checks = (
        ("too_short", _too_short),
        ("symbol_ratio", _symbols),
        ("alpha_tokens", _alpha_tokens),
        ("duplicate_lines", _duplicate_lines),
        ("top_ngram", _top_ngram),
        ("duplicate_ngrams", _duplicate_ngrams),
        ("lorem_ipsum", _lorem_ipsum),
    )
    for name, rule in checks:
        if name in config.disabled:
            continue
        detail = rule(facts, config)
        if detail is not None:
            return name, detail
    return None


def _too_short(facts: _Facts, config: QualityConfig) -> str | None:
    language = facts.doc.language
    minimum = dict(config.min_chars).get(language, config.default_min_chars)
    chars = sum(1 for c in facts.doc.text if not c.isspace())
    return f"{chars} chars < {minimum} ({language or '?'})" if chars < minimum else None


def _symbols(facts: _Facts, config: QualityConfig) -> str | None:
    text = facts.doc.text
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return "no visible characters"
    ratio = sum(1 for c in visible if not c.isalnum()) / len(visible)
    if ratio > config.max_symbol_ratio:
        return f"symbol ratio {ratio:.2f} > {config.max_symbol_ratio}"
    marks = text.count("#") + text.count("...") + text.count("…")
    per_token = marks / max(1, len(facts.tokens))
    if per_token > config.max_hash_ellipsis_ratio:
        return f"#/ellipsis per token {per_token:.2f} > {config.max_hash_ellipsis_ratio}"
    return None


def _alpha_tokens(facts: _Facts, config: QualityConfig) -> str | None:
    if not facts.tokens:
        return "no tokens"
    ratio = sum(1 for t in facts.tokens if not t.isdigit()) / len(facts.tokens)
    if ratio < config.min_alpha_token_ratio:
        return f"alphabetic tokens {ratio:.2f} < {config.min_alpha_token_ratio}"
    return None


def _duplicate_lines(facts: _Facts, config: QualityConfig) -> str | None:
    lines = [line for line in facts.doc.text.split("\n") if line.strip()]
    if len(lines) < 2:
        return None
    seen: set[str] = set()
    repeats, repeat_chars = 0, 0
    for line in lines:
        if line in seen:
            repeats, repeat_chars = repeats + 1, repeat_chars + len(line)
        seen.add(line)
    total_chars = sum(len(line) for line in lines)
    if repeats / len(lines) > config.max_duplicate_line_ratio:
        return f"repeated lines {repeats}/{len(lines)}"
    if repeat_chars / total_chars > config.max_duplicate_line_char_ratio:
        return f"repeated lines hold {repeat_chars / total_chars:.2f} of the characters"
    return None


def _top_ngram(facts: _Facts, config: QualityConfig) -> str | None:
    found, total = facts.tokens, facts.token_chars
    for n, limit in config.top_ngram_max:
        grams = Counter(zip(*(found[i:] for i in range(n)), strict=False))
        if not grams:
            continue
        gram, count = grams.most_common(1)[0]
        if count > 1 and count * sum(len(t) for t in gram) / total > limit:
            return f"top {n}-gram {' '.join(gram)!r} x{count} > {limit} of the characters"
    return None


def _duplicate_ngrams(facts: _Facts, config: QualityConfig) -> str | None:
    found, total = facts.tokens, facts.token_chars
    for n, limit in config.duplicate_ngram_max:
        grams = list(zip(*(found[i:] for i in range(n)), strict=False))
        counts = Counter(grams)
        covered = bytearray(len(found))
        for start, gram in enumerate(grams):
            if counts[gram] > 1:
                covered[start : start + n] = b"\x01" * n
        share = sum(len(t) for t, hit in zip(found, covered, strict=True) if hit) / total
        if share > limit:
            return f"duplicated {n}-grams cover {share:.2f} > {limit} of the characters"
    return None


def _lorem_ipsum(facts: _Facts, _config: QualityConfig) -> str | None:
    return "contains 'lorem ipsum'" if "lorem ipsum" in facts.doc.text.casefold() else None


class QualityFilter:
    """Removes documents that fail a quality rule."""

    name = "quality"

    def __init__(self, config: QualityConfig) -> None:
        self._config = config

    def apply(self, doc: Doc) -> Outcome:
        failed = check(doc, self._config)
        if failed is None:
            return Kept(doc)
        return Removed(doc, failed[0], failed[1])
