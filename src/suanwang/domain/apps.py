"""Apps: a model, a system prompt, knowledge bases and parameters, versioned (pure).

An app is called on the gateway as ``model="app:<name>"`` (its published version) or
``model="app:<name>@<version>"``. Every change makes a new immutable :class:`AppVersion`;
one version is published (publishing an older one is the rollback). What is here: the
shapes, their checks (each refusal names its field), the model-string grammar, and how an
app's prompt and citations are built from retrieved chunks. What is not: storage
(``adapters/db/apps_repo``), retrieval (``services/knowledge``), the gateway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from suanwang.domain.changes import UNCHANGED, Unchanged, changed_fields
from suanwang.domain.errors import ValidationError
from suanwang.domain.knowledge import KB_NAME, Hit, KnowledgeBase, RetrievalMode

APP_NAME = KB_NAME
"""Like every tenant name: 1-63 of a-z 0-9 . _ -, starting with a letter or digit."""
APP_PREFIX = "app:"
MAX_PROMPT_CHARS = 8000
MAX_APP_KBS = 5
MAX_APP_TOP_K = 20
MAX_APP_TOKENS = 8192
MAX_SHARED_KEYS = 100
EXCERPT_CHARS = 300
"""A citation's ``text``: the chunk's first characters."""
_MODEL_STRING = re.compile(r"^app:([a-z0-9][a-z0-9._-]{0,62})(?:@([1-9][0-9]{0,8}))?$")


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What a version fixes: the model, the prompt, the bases and the parameters."""

    model: str
    system_prompt: str
    knowledge_bases: tuple[str, ...] = ()
    """Knowledge base ids, of the app's own tenant."""
    temperature: float | None = None
    max_tokens: int | None = None
    """Caps the caller's max_tokens (None: the gateway's default applies)."""
    top_k: int = 3
    retrieval_mode: RetrievalMode = RetrievalMode.HYBRID
    score_floor: float | None = None
    """Chunks scoring below this are not given to the model (the mode's score)."""

    def __post_init__(self) -> None:
        if not self.system_prompt.strip():
            raise ValidationError(
                "the system prompt is empty", field="system_prompt", hint="say what the app does"
            )
        if len(self.system_prompt) > MAX_PROMPT_CHARS:
            raise ValidationError(
                f"the system prompt exceeds {MAX_PROMPT_CHARS} characters", field="system_prompt"
            )
        if len(self.knowledge_bases) > MAX_APP_KBS:
            raise ValidationError(
                f"at most {MAX_APP_KBS} knowledge bases per app", field="knowledge_bases"
            )
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise ValidationError("temperature must be 0-2", field="temperature", hint="e.g. 0.3")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= MAX_APP_TOKENS:
            raise ValidationError(
                f"max_tokens must be 1-{MAX_APP_TOKENS}", field="max_tokens", hint="e.g. 512"
            )
        if not 1 <= self.top_k <= MAX_APP_TOP_K:
            raise ValidationError(f"top_k must be 1-{MAX_APP_TOP_K}", field="top_k", hint="e.g. 3")


@dataclass(frozen=True, slots=True)
class AppChange:
    """An update: the fields it sets (the others keep the latest version's values)."""

    model: str | Unchanged = UNCHANGED
    system_prompt: str | Unchanged = UNCHANGED
    knowledge_bases: tuple[str, ...] | Unchanged = UNCHANGED
    temperature: float | Unchanged | None = UNCHANGED
    max_tokens: int | Unchanged | None = UNCHANGED
    top_k: int | Unchanged = UNCHANGED
    retrieval_mode: RetrievalMode | Unchanged = UNCHANGED
    score_floor: float | Unchanged | None = UNCHANGED

    def applied_to(self, settings: AppSettings) -> AppSettings:
        """The next version's settings (checked again)."""
        return replace(settings, **changed_fields(self))


@dataclass(frozen=True, slots=True)
class App:
    id: str
    tenant: str
    name: str
    description: str
    published: int
    """The version calls without ``@version`` use."""
    latest: int
    shared_keys: tuple[str, ...]
    """Key ids of the tenant that may call it; empty: every key of the tenant."""
    template: str | None
    created_at: float
    updated_at: float

    def usable_by(self, tenant: str, key_id: str) -> bool:
        """Only keys of the app's own tenant, and of those only the shared ones if named."""
        return tenant == self.tenant and (not self.shared_keys or key_id in self.shared_keys)


@dataclass(frozen=True, slots=True)
class AppVersion:
    app_id: str
    version: int
    settings: AppSettings
    note: str
    created_at: float


@dataclass(frozen=True, slots=True)
class PublishedApp:
    """An app version resolved for one caller: what the gateway runs."""

    name: str
    version: int
    settings: AppSettings
    bases: tuple[KnowledgeBase, ...]

    @property
    def label(self) -> str:
        """``app:<name>@<version>``: the ledger's ``source`` of the app's usage rows."""
        return f"{APP_PREFIX}{self.name}@{self.version}"

    @property
    def embedding_model(self) -> str | None:
        """The model the query is embedded with (None: keyword retrieval, or no bases)."""
        if self.settings.retrieval_mode is RetrievalMode.KEYWORD:
            return None
        models = sorted({kb.embedding_model for kb in self.bases if kb.embedding_model})
        return models[0] if models else None


def check_name(name: str) -> None:
    if not APP_NAME.match(name):
        raise ValidationError(
            f"bad app name {name!r}",
            field="name",
            hint="1-63 of a-z 0-9 . _ -, starting with a letter or digit",
        )


def parse_app_model(model: str) -> tuple[str, int | None] | None:
    """``(name, version)`` of an ``app:<name>[@<version>]`` model string; None for a model
    string that does not name an app (an ill-formed one is an unknown model)."""
    found = _MODEL_STRING.match(model)
    if found is None:
        return None
    return found.group(1), int(found.group(2)) if found.group(2) else None


def query_of(messages: Sequence[Any]) -> str:
    """What to retrieve with: the text of the last user message ('' if there is none)."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def kept_hits(hits: Sequence[Hit], floor: float | None) -> list[Hit]:
    return [h for h in hits if floor is None or h.score >= floor]


def system_message(prompt: str, hits: Sequence[Hit]) -> str:
    """The app's prompt, then the retrieved chunks as a numbered context block."""
    if not hits:
        return prompt
    lines = [
        prompt,
        "",
        "Answer from the context below when it helps, and cite it as [n].",
        "Context:",
    ]
    for n, hit in enumerate(hits, start=1):
        lines.append(f"[{n}] ({hit.document_name}) {hit.text.strip()}")
    return "\n".join(lines)


def app_messages(prompt: str, hits: Sequence[Hit], messages: Sequence[Any]) -> list[Any]:
    """The messages sent to the model: the app's system message, then the caller's."""
    return [{"role": "system", "content": system_message(prompt, hits)}, *messages]


def citations(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """The ``citations`` array of an app's answer, numbered as in the context block."""
    return [
        {
            "index": n,
            "document": hit.document_name,
            "document_id": hit.document_id,
            "chunk_id": hit.chunk_id,
            "score": round(hit.score, 6),
            "text": hit.text[:EXCERPT_CHARS],
        }
        for n, hit in enumerate(hits, start=1)
    ]
