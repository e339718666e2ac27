"""An app's answer as a stream of events: the console's chat playground reads these (pure).

The gateway answers ``model="app:<name>"`` with OpenAI's server-sent events: content
deltas, then a last chunk carrying the ``citations`` and the ``usage``
(docs/apps.md). The playground does not read that wire format: the gateway side parses it
(``gateway/playground.py``) into the events here, so the console only ever sees
:class:`AnswerText`, then one :class:`AnswerDone` or one :class:`AnswerFailed`.

What is here: the event shapes, the question's checks, and :func:`citation_of`, which
parses one citation of the gateway's answer. What is not: the gateway call itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suanwang.domain.errors import ValidationError

MAX_QUESTION_CHARS = 4000
"""A playground question: a message box, not a document."""


@dataclass(frozen=True, slots=True)
class Citation:
    """One chunk the answer was given, numbered as in the app's context block."""

    index: int
    document: str
    document_id: str
    chunk_id: str
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class AnswerText:
    """A piece of the answer, as the engine generated it."""

    text: str


@dataclass(frozen=True, slots=True)
class AnswerDone:
    """The end of a complete answer: what it cited and the tokens it was billed."""

    citations: tuple[Citation, ...]
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class AnswerFailed:
    """The call was refused or broke (the gateway's status and message)."""

    status: int
    message: str


AnswerEvent = AnswerText | AnswerDone | AnswerFailed


def check_question(question: str) -> str:
    """The question, stripped; a refusal naming the ``message`` field if empty or long."""
    text = question.strip()
    if not text:
        raise ValidationError("the message is empty", field="message", hint="ask a question")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValidationError(
            f"the message exceeds {MAX_QUESTION_CHARS} characters", field="message"
        )
    return text


def citation_of(raw: Mapping[str, Any]) -> Citation:
    """One entry of a ``citations`` array (TypeError/KeyError/ValueError if malformed)."""
    return Citation(
        index=int(raw["index"]),
        document=str(raw["document"]),
        document_id=str(raw["document_id"]),
        chunk_id=str(raw["chunk_id"]),
        score=float(raw["score"]),
        text=str(raw["text"]),
    )
