"""The cleaning configuration: a TOML or JSON file parsed once into typed step configs.

Every section is optional; unknown keys are refused with the key's name. Example (TOML)::

    text_field = "content"
    output_format = "parquet"        # or "jsonl" (default)
    on_bad_record = "skip"           # or "fail" (default)

    [near_dedup]
    threshold = 0.5                  # MinHash Jaccard estimate
    [language]
    keep = ["zh", "en"]
    [quality]
    min_chars = {zh = 30, en = 100}
    disabled = ["lorem_ipsum"]
    [llm_score]                      # off unless a model is named here or on the command line
    model = "smollm2-135m-instruct"
    threshold = 3

Each step section takes ``enabled = false`` to switch the step off.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from suanwang.corpus.dedup import NearDedupConfig
from suanwang.corpus.language import LanguageConfig
from suanwang.corpus.normalize import NormalizeConfig
from suanwang.corpus.pii import KINDS, PiiConfig
from suanwang.corpus.quality import DUP_NGRAM_MAX, TOP_NGRAM_MAX, QualityConfig
from suanwang.corpus.records import CorpusInputError, RecordFormat


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True


class NormalizeSection(_Section):
    nfkc: bool = True
    fullwidth: bool = True
    controls: bool = True
    whitespace: bool = True


class NearDedupSection(_Section):
    threshold: float = Field(0.5, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_chars: int = Field(5, ge=1, le=32)


class LanguageSection(_Section):
    keep: tuple[str, ...] = ("zh", "en")


class PiiSection(_Section):
    kinds: tuple[Literal["ID_CN", "BANK_CARD", "PHONE_CN", "EMAIL", "IPV4", "IPV6"], ...] = KINDS  # type: ignore[assignment]


class QualitySection(_Section):
    min_chars: dict[str, int] = Field(default_factory=lambda: {"zh": 30, "en": 100})
    default_min_chars: int = 50
    max_symbol_ratio: float = 0.30
    max_hash_ellipsis_ratio: float = 0.10
    min_alpha_token_ratio: float = 0.80
    max_duplicate_line_ratio: float = 0.30
    max_duplicate_line_char_ratio: float = 0.20
    top_ngram_max: dict[int, float] = Field(default_factory=lambda: dict(TOP_NGRAM_MAX))
    duplicate_ngram_max: dict[int, float] = Field(default_factory=lambda: dict(DUP_NGRAM_MAX))
    disabled: frozenset[
        Literal[
            "too_short",
            "symbol_ratio",
            "alpha_tokens",
            "duplicate_lines",
            "top_ngram",
            "duplicate_ngrams",
            "lorem_ipsum",
        ]
    ] = frozenset()


class LlmScoreSection(_Section):
    model: str | None = None
    threshold: int = Field(3, ge=0, le=5)
    max_concurrency: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(60.0, gt=0)
    max_chars: int = Field(1500, ge=1)
    on_failure: Literal["keep", "drop"] = "keep"
    structured: bool = True


class CleanFile(BaseModel):
    """The whole file (all keys optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text_field: str = "text"
    id_field: str = "id"
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    on_bad_record: Literal["fail", "skip"] = "fail"
    batch_size: int = Field(256, ge=1, le=65536)
    max_examples: int = Field(5, ge=0, le=1000)
    normalize: NormalizeSection = NormalizeSection()
    exact_dedup: _Section = _Section()
    near_dedup: NearDedupSection = NearDedupSection()
    language: LanguageSection = LanguageSection()
    pii: PiiSection = PiiSection()
    quality: QualitySection = QualitySection()
    llm_score: LlmScoreSection = LlmScoreSection()


@dataclass(frozen=True, slots=True)
class CleanConfig:
    """The parsed configuration the pipeline runs with (None: the step is off)."""

    records: RecordFormat
    output_format: str
    batch_size: int
    max_examples: int
    normalize: NormalizeConfig | None
    exact_dedup: bool
    near_dedup: NearDedupConfig | None
    language: LanguageConfig | None
    pii: PiiConfig | None
    quality: QualityConfig | None
    llm_score: LlmScoreSection | None


def load(path: Path | None, score_with_model: str | None = None) -> CleanConfig:
    """Read ``path`` (TOML or JSON; None: defaults); CorpusInputError names a bad key."""
    raw: object = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise CorpusInputError(f"--config {path}: cannot read it ({exc})") from exc
    try:
        parsed = CleanFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CorpusInputError(f"--config {path}: {where}: {first['msg']}") from exc
    return from_file(parsed, score_with_model)


def from_file(parsed: CleanFile, score_with_model: str | None = None) -> CleanConfig:
    """The typed configuration of a parsed file (``score_with_model`` overrides the model)."""
    s = parsed
    score = s.llm_score
    if score_with_model:
        score = score.model_copy(update={"model": score_with_model, "enabled": True})
    q = s.quality
    quality = QualityConfig(
        min_chars=tuple(sorted(q.min_chars.items())),
        default_min_chars=q.default_min_chars,
        max_symbol_ratio=q.max_symbol_ratio,
        max_hash_ellipsis_ratio=q.max_hash_ellipsis_ratio,
        min_alpha_token_ratio=q.min_alpha_token_ratio,
        max_duplicate_line_ratio=q.max_duplicate_line_ratio,
        max_duplicate_line_char_ratio=q.max_duplicate_line_char_ratio,
        top_ngram_max=tuple(sorted(q.top_ngram_max.items())),
        duplicate_ngram_max=tuple(sorted(q.duplicate_ngram_max.items())),
        disabled=frozenset(q.disabled),
    )
    n, nd = s.normalize, s.near_dedup
    return CleanConfig(
        records=RecordFormat(s.text_field, s.id_field, s.on_bad_record == "skip"),
        output_format=s.output_format,
        batch_size=s.batch_size,
        max_examples=s.max_examples,
        normalize=NormalizeConfig(n.nfkc, n.fullwidth, n.controls, n.whitespace)
        if n.enabled
        else None,
        exact_dedup=s.exact_dedup.enabled,
        near_dedup=NearDedupConfig(nd.threshold, nd.num_perm, nd.shingle_chars)
        if nd.enabled
        else None,
        language=LanguageConfig(s.language.keep) if s.language.enabled else None,
        pii=PiiConfig(tuple(s.pii.kinds)) if s.pii.enabled else None,
        quality=quality if q.enabled else None,
        llm_score=score if score.enabled and score.model else None,
    )
