"""Instantiating an industry template over the API, in one command with Rich progress.

Steps: create the knowledge base ``<app>-kb`` with the template's settings, upload each
starter document (the server parses, chunks and embeds it), create and publish the app
on it. A failed step removes what the earlier ones made (the app, then the knowledge
base), so a failed instantiation leaves nothing behind, and the error is re-raised.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from suanwang.cli.client import CliError
from suanwang.cli.common import segment
from suanwang.services.app_templates import AppTemplate

KB_BASE = "/api/v1/knowledge-bases"
APP_BASE = "/api/v1/apps"
NO_EMBEDDING = "none"


def instantiate(
    api: Any,
    tpl: AppTemplate,
    name: str,
    *,
    model: str | None = None,
    embedding_model: str | None = None,
    console: Console | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Create ``tpl``'s knowledge base, documents and app as ``name``; the app's detail."""
    embedding = embedding_model or tpl.embedding_model
    if embedding == NO_EMBEDDING:
        embedding = None
    kb_body = {
        "name": f"{name}-kb"[:63],
        "description": f"starter documents of the {tpl.name} template",
        "chunk_size": tpl.chunking.size_chars,
        "chunk_overlap": tpl.chunking.overlap_chars,
        "embedding_model": embedding,
    }
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    steps = len(tpl.documents) + 2
    kb: dict[str, Any] | None = None
    with Progress(*columns, TimeElapsedColumn(), console=console, disable=quiet) as bar:
        task = bar.add_task("knowledge base", total=steps)
        try:
            kb = api.call("POST", KB_BASE, json=kb_body)
            bar.advance(task)
            for doc in tpl.documents:
                bar.update(task, description=doc)
                files = {"file": (doc, tpl.document(doc))}
                api.call("POST", f"{KB_BASE}/{segment(kb['id'])}/documents", files=files)
                bar.advance(task)
            bar.update(task, description="app")
            app = api.call("POST", APP_BASE, json=_app_body(tpl, name, kb["id"], model))
            bar.advance(task)
        except (CliError, KeyError, TypeError):
            if kb is not None:
                _remove_kb(api, kb)
            raise
    assert isinstance(app, dict)
    return app


def _app_body(tpl: AppTemplate, name: str, kb_id: str, model: str | None) -> dict[str, Any]:
    s = tpl.settings
    return {
        "name": name,
        "model": model or s.model,
        "system_prompt": s.system_prompt,
        "knowledge_bases": [kb_id],
        "temperature": s.temperature,
        "max_tokens": s.max_tokens,
        "top_k": s.top_k,
        "retrieval_mode": s.retrieval_mode.value,
        "description": tpl.description.get("en", ""),
        "template": tpl.name,
    }


def _remove_kb(api: Any, kb: dict[str, Any]) -> None:
    """Undo a half-made instantiation (its error is the one the caller sees)."""
    try:
        api.call("DELETE", f"{KB_BASE}/{segment(kb['id'])}")
    except CliError as exc:  # reported: the caller raises the first error
        Console(stderr=True).print(f"could not remove knowledge base {kb['name']}: {exc.line()}")
