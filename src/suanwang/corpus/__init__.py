"""Corpus cleaning (语料清洗): a job program that cleans Chinese and English text corpora.

Steps, in order (each in its own module, pure except ``records`` and ``scoring``):
``normalize`` (Unicode), ``dedup`` (exact and MinHash LSH near duplicates), ``language``
(langid), ``pii`` (typed placeholders, checksummed IDs and cards), ``quality`` (Gopher/C4
rules) and the optional ``scoring`` (LLM 0-5 score through the platform's gateway).
``pipeline`` runs them over ``records`` (JSONL/Parquet in, cleaned records out) and ``report``
writes what each step did. Run it as ``python -m suanwang.corpus clean ...``
(docs/corpus.md). This package imports nothing of the platform's services or adapters.
"""

from suanwang.corpus.config import CleanConfig, load
from suanwang.corpus.normalize import normalize
from suanwang.corpus.pii import scrub
from suanwang.corpus.pipeline import Pipeline
from suanwang.corpus.records import CorpusInputError

__all__ = ["CleanConfig", "CorpusInputError", "Pipeline", "load", "normalize", "scrub"]
