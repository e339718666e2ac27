"""Step 7 (optional): LLM-assisted quality scoring through an OpenAI-compatible gateway.

Each document (its first ``max_chars`` characters) is sent to ``POST {base_url}/chat/completions``
with a rubric asking for one digit 0-5 (held to it by a JSON schema,
``SCORE_SCHEMA``); a document scoring below ``threshold`` is removed. In
a platform job the base URL is ``$OPENAI_BASE_URL`` (set for ``network: gateway`` jobs, see
docs/jobs.md) and the key ``$OPENAI_API_KEY`` (the tenant's own, passed in the job's env), so
every call is metered and billed to the tenant like any other gateway request.

At most ``max_concurrency`` requests are in flight (a thread pool over one HTTP client), each
with ``timeout_s``. A call that fails (HTTP error, timeout, no digit in the answer) is never
silently decided: it is counted as ``score_failed`` with the error, and the document is kept
or removed as ``on_failure`` says (default keep). The HTTP transport is injectable
(``httpx.MockTransport`` in unit tests).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from suanwang.corpus.documents import Doc, Kept, Outcome, Removed

log = logging.getLogger(__name__)
RUBRIC = (
    "You grade documents for a language-model training corpus. Reply with a single digit: "
    "0 = gibberish, spam or boilerplate; 1 = mostly noise; 2 = poor; 3 = acceptable; "
    "4 = good, fluent and informative; 5 = excellent. Reply with the digit only."
)
_DIGIT = re.compile(r"[0-5]")
SCORE_SCHEMA = {"type": "integer", "enum": [0, 1, 2, 3, 4, 5]}
"""With ``structured`` (default) the answer is constrained to one of the six numbers through
``response_format`` (llama.cpp turns the schema into a grammar), so even a small model
answers with a score and spends no tokens on JSON whitespace (an object schema let SmolLM2
run out of tokens inside ``{\n  "s``); the first digit 0-5 of the answer is read either way."""


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Where and how to score; ``model`` is the gateway's model name."""

    base_url: str
    api_key: str
    model: str
    threshold: int = 3
    max_concurrency: int = 4
    timeout_s: float = 60.0
    max_chars: int = 1500
    max_tokens: int = 8
    on_failure: str = "keep"
    structured: bool = True


class ScoreError(Exception):
    """A scoring call gave no usable score (the message says why)."""


class LlmScorer:
    """Scores a batch of documents concurrently; see the module docstring."""

    name = "llm_score"

    def __init__(self, config: ScoringConfig, transport: httpx.BaseTransport | None = None):
        self._config = config
        self._client = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=config.timeout_s,
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="llm-score")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def score(self, text: str) -> int:
        """The model's 0-5 score of ``text``; ScoreError if the call gives none."""
        body: dict[str, object] = {
            "model": self._config.model,
            "messages": [
                {"role": "system", "content": RUBRIC},
                {"role": "user", "content": text[: self._config.max_chars]},
            ],
            "temperature": 0,
            "max_tokens": self._config.max_tokens,
        }
        if self._config.structured:
            schema = {"name": "score", "schema": SCORE_SCHEMA}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        try:
            response = self._client.post("chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise ScoreError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise ScoreError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            content = str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ScoreError(f"unexpected answer: {response.text[:200]}") from exc
        found = _DIGIT.search(content)
        if found is None:
            raise ScoreError(f"no score 0-5 in the answer {content[:80]!r}")
        return int(found.group(0))

    def apply_batch(self, docs: Sequence[Doc]) -> list[Outcome]:
        """Score ``docs`` with bounded concurrency; outcomes in the same order."""
        futures = [self._pool.submit(self.score, doc.text) for doc in docs]
        return [self._decide(doc, future) for doc, future in zip(docs, futures, strict=True)]

    def _decide(self, doc: Doc, future: Future[int]) -> Outcome:
        try:
            value = future.result()
        except ScoreError as error:
            log.warning("scoring %s failed: %s", doc.id, error)
            if self._config.on_failure == "drop":
                return Removed(doc, "score_failed", str(error))
            return Kept(doc, (("score_failed", 1),), note=f"score_failed (kept): {error}")
        if value < self._config.threshold:
            return Removed(doc, "low_llm_score", f"score {value} < {self._config.threshold}")
        return Kept(doc, ((f"score_{value}", 1),))
