"""Industry app templates packaged in ``suanwang/data/app_templates/<name>/``.

Each template is a ``template.yaml`` (the app's model, prompt and parameters, its
knowledge base's settings, the starter documents and sample questions with the document
that answers each) and the starter documents beside it (Chinese and English). They are
parsed here once into :class:`AppTemplate`; ``suanwang apps create --from-template``
instantiates one (docs/apps.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

from suanwang.domain.apps import AppSettings, check_name
from suanwang.domain.errors import Conflict, NotFound, ValidationError
from suanwang.domain.knowledge import ChunkSettings, RetrievalMode
from suanwang.domain.tenancy import Principal
from suanwang.services.apps import AppDetail, Apps, AppSpec
from suanwang.services.knowledge import KnowledgeBases, KnowledgeBaseSpec, Upload

ROOT = "data/app_templates"


@dataclass(frozen=True, slots=True)
class Sample:
    question: str
    document: str
    """The starter document that answers it."""


@dataclass(frozen=True, slots=True)
class AppTemplate:
    name: str
    industry: str
    title: dict[str, str]
    description: dict[str, str]
    settings: AppSettings
    """With no knowledge bases: the instance's own is added when it is made."""
    embedding_model: str | None
    chunking: ChunkSettings
    documents: tuple[str, ...]
    samples: tuple[Sample, ...]

    def document(self, name: str) -> bytes:
        """A starter document's bytes."""
        if name not in self.documents:
            raise NotFound(f"template {self.name} has no document {name!r}", field="document")
        path = resources.files("suanwang").joinpath(f"{ROOT}/{self.name}/{name}")
        return path.read_bytes()


def templates() -> dict[str, AppTemplate]:
    """Every packaged template, by name."""
    found: dict[str, AppTemplate] = {}
    folder = resources.files("suanwang").joinpath(ROOT)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        spec = entry.joinpath("template.yaml")
        if entry.is_dir() and spec.is_file():
            template = parse_template(yaml.safe_load(spec.read_text(encoding="utf-8")))
            if template.name != entry.name:
                raise ValueError(f"{entry.name}/template.yaml names {template.name!r}")
            found[template.name] = template
    return found


def template(name: str) -> AppTemplate:
    found = templates().get(name)
    if found is None:
        raise ValidationError(
            f"no app template {name!r}",
            field="--from-template",
            hint="one of: " + ", ".join(templates()),
        )
    return found


def parse_template(data: Any) -> AppTemplate:
    """A template from its parsed YAML (ValueError/KeyError/TypeError if it is not one)."""
    app, kb = data["app"], data["knowledge_base"]
    check_name(str(data["name"]))
    settings = AppSettings(
        model=str(app["model"]),
        system_prompt=str(app["system_prompt"]).strip(),
        temperature=float(app["temperature"]) if "temperature" in app else None,
        max_tokens=int(app["max_tokens"]) if "max_tokens" in app else None,
        top_k=int(app.get("top_k", 3)),
        retrieval_mode=RetrievalMode(app.get("retrieval_mode", "hybrid")),
    )
    documents = tuple(str(d) for d in kb["documents"])
    samples = tuple(Sample(str(s["question"]), str(s["document"])) for s in data["samples"])
    if any(s.document not in documents for s in samples):
        raise ValueError(f"template {data['name']}: a sample names a document it does not ship")
    return AppTemplate(
        name=str(data["name"]),
        industry=str(data["industry"]),
        title={str(k): str(v) for k, v in data["title"].items()},
        description={str(k): str(v).strip() for k, v in data["description"].items()},
        settings=settings,
        embedding_model=kb.get("embedding_model"),
        chunking=ChunkSettings(int(kb.get("chunk_size", 400)), int(kb.get("chunk_overlap", 60))),
        documents=documents,
        samples=samples,
    )


def instantiate_keyword(
    apps: Apps, knowledge: KnowledgeBases, principal: Principal, tpl: AppTemplate, name: str
) -> AppDetail:
    """Make ``tpl``'s app as ``name`` on a new knowledge base ``<name>-kb`` of its starter
    documents, searched by keyword (no embedding: the console has no key to embed with).

    Checked before anything is made (the name, and that neither the app nor the base
    exists); a later failure removes the base again, so a refusal leaves nothing behind.
    """
    check_name(name)
    kb_name = f"{name}-kb"[:63]
    if any(a.name == name for a in apps.visible(principal)):
        raise Conflict(f"app {name!r} exists", field="name", hint="pick another name")
    if knowledge.owned(principal, kb_name) is not None:
        raise Conflict(f"knowledge base {kb_name!r} exists", field="name", hint="pick another")
    spec = KnowledgeBaseSpec(kb_name, f"starter documents of the {tpl.name} template", tpl.chunking)
    kb = knowledge.create(principal, spec)
    try:
        for document in tpl.documents:
            knowledge.upload(principal, kb.id, Upload(document, tpl.document(document)), None)
        settings = replace(tpl.settings, knowledge_bases=(kb.id,))
        app = AppSpec(name, settings, tpl.description.get("en", ""), tpl.name)
        return apps.create(principal, app)
    except Exception:  # whatever failed, the base goes again; the error is the caller's
        knowledge.delete(principal, kb.id)
        raise
