"""``suanwang kb``: knowledge bases, their documents, and retrieval from them.

``kb upload`` sends each file as its own request (the server parses, chunks and embeds it
before it answers) under a Rich progress bar over the bytes of all files; a file the
server refuses is reported on its own line and the others go on; the exit code is 1 if
any failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, cell, emit_json, err, new_table, out, say, segment
from suanwang.cli.common import state as cli_state

kb_app = typer.Typer(help="Knowledge bases: documents and retrieval.", no_args_is_help=True)
KbArg = Annotated[str, typer.Argument(metavar="KB", help="knowledge base id or name")]
BASE = "/api/v1/knowledge-bases"


def _kb_id(api: Any, kb: str) -> str:
    if kb.startswith("kb_"):
        return kb
    for item in api.call("GET", BASE):
        if item["name"] == kb:
            return str(item["id"])
    raise CliError(f"no knowledge base named {kb!r}", field="KB", hint="suanwang kb list")


@kb_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    embedding_model: Annotated[
        str | None, typer.Option(help="e.g. all-minilm-l6-v2 (default: keyword retrieval only)")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="characters per chunk")] = 400,
    chunk_overlap: Annotated[int, typer.Option(help="characters repeated")] = 60,
    description: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a knowledge base in your tenant."""
    body = {
        "name": name,
        "embedding_model": embedding_model,
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "description": description,
    }
    st = cli_state(ctx, as_json)
    with st.client() as api:
        kb = api.call("POST", BASE, json=body)
    if st.json:
        emit_json(kb)
        return
    say(f"created knowledge base {kb['name']} ({kb['id']})")


@kb_app.command("list")
def list_kbs(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Your tenant's knowledge bases."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        items = api.call("GET", BASE)
    if st.json:
        emit_json(items)
        return
    table = new_table("Knowledge bases", ("ID", "NAME", "EMBEDDING", "CHUNK", "OVERLAP"))
    for kb in items:
        table.add_row(
            cell(kb["id"]),
            cell(kb["name"]),
            cell(kb["embedding_model"] or "- (keyword)"),
            cell(kb["chunk_size"]),
            cell(kb["chunk_overlap"]),
        )
    out.print(table)


@kb_app.command("delete")
def delete(ctx: typer.Context, kb: KbArg, as_json: JsonOpt = False) -> None:
    """Delete a knowledge base with all its documents and chunks."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        gone = api.call("DELETE", f"{BASE}/{segment(_kb_id(api, kb))}")
    if st.json:
        emit_json(gone)
        return
    say(f"deleted knowledge base {gone['name']} ({gone['id']})")


@kb_app.command("docs")
def docs(ctx: typer.Context, kb: KbArg, as_json: JsonOpt = False) -> None:
    """A knowledge base's documents."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        items = api.call("GET", f"{BASE}/{segment(_kb_id(api, kb))}/documents")
    if st.json:
        emit_json(items)
        return
    table = new_table(
        "Documents", ("ID", "NAME", "TYPE", "BYTES", "CHUNKS", "EMBED TOKENS"), numbers=("BYTES",)
    )
    for d in items:
        table.add_row(
            cell(d["id"]),
            cell(d["name"]),
            cell(d["media_type"]),
            cell(d["size_bytes"]),
            cell(d["chunks"]),
            cell(d["embedding_tokens"]),
        )
    out.print(table)


@kb_app.command("upload")
def upload(
    ctx: typer.Context,
    kb: KbArg,
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", exists=True, dir_okay=False)],
    as_json: JsonOpt = False,
) -> None:
    """Upload documents (txt, md, html, pdf, docx); a file of the same name is replaced."""
    st = cli_state(ctx, as_json)
    done: list[Any] = []
    failed = 0
    with st.client() as api:
        kb_id = segment(_kb_id(api, kb))
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
        with Progress(*columns, TimeElapsedColumn(), console=err, disable=st.json) as bar:
            task = bar.add_task("uploading", total=sum(f.stat().st_size for f in files))
            for path in files:
                bar.update(task, description=path.name)
                try:
                    files_part = {"file": (path.name, path.read_bytes())}
                    doc = api.call("POST", f"{BASE}/{kb_id}/documents", files=files_part)
                    done.append(doc)
                    bar.console.print(f"{path.name}: {doc['chunks']} chunks ({doc['id']})")
                except CliError as exc:
                    failed += 1
                    bar.console.print(f"{path.name}: {exc.line()}", style="red")
                bar.advance(task, path.stat().st_size)
    if st.json:
        emit_json(done)
    if failed:
        raise typer.Exit(1)


@kb_app.command("rm")
def remove_document(
    ctx: typer.Context,
    kb: KbArg,
    document: Annotated[str, typer.Argument(metavar="DOC", help="document id or name")],
) -> None:
    """Delete one document and its chunks."""
    st = cli_state(ctx)
    with st.client() as api:
        kb_id = segment(_kb_id(api, kb))
        doc_id = document
        if not document.startswith("doc_"):
            named = [
                d for d in api.call("GET", f"{BASE}/{kb_id}/documents") if d["name"] == document
            ]
            if not named:
                raise CliError(f"no document named {document!r}", field="DOC")
            doc_id = named[0]["id"]
        gone = api.call("DELETE", f"{BASE}/{kb_id}/documents/{segment(doc_id)}")
    say(f"deleted {gone['name']} ({gone['id']})")


@kb_app.command("retrieve")
def retrieve(
    ctx: typer.Context,
    kb: KbArg,
    query: Annotated[str, typer.Argument(metavar="QUERY")],
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 3,
    mode: Annotated[str, typer.Option(help="vector, keyword or hybrid")] = "hybrid",
    as_json: JsonOpt = False,
) -> None:
    """The chunks that best match QUERY, with scores."""
    st = cli_state(ctx, as_json)
    body = {"query": query, "top_k": top_k, "mode": mode}
    with st.client() as api:
        found = api.call("POST", f"{BASE}/{segment(_kb_id(api, kb))}/retrieve", json=body)
    if st.json:
        emit_json(found)
        return
    table = new_table("Hits", ("SCORE", "DOCUMENT", "CHUNK", "TEXT"), wrap=("TEXT",))
    for h in found["hits"]:
        table.add_row(
            cell(f"{h['score']:.4f}"),
            cell(h["document"]),
            cell(h["chunk_id"]),
            cell(h["text"][:120]),
        )
    out.print(table)
    say(f"mode {found['mode']}, {found['embedding_tokens']} embedding tokens")
