"""``suanwang apps``: apps (a model, a prompt, knowledge bases), versions, templates.

An app is called on the gateway as ``model="app:<name>"`` (docs/apps.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suanwang.cli.app_template import instantiate
from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, cell, emit_json, err, new_table, out, say, segment
from suanwang.cli.common import state as cli_state
from suanwang.domain.errors import DomainError
from suanwang.services.app_templates import template, templates

apps_app = typer.Typer(help="Apps behind the OpenAI-compatible API.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="the app's name")]
BASE = "/api/v1/apps"
ModelOpt = Annotated[str | None, typer.Option(help="a chat model, e.g. smollm2-135m-instruct")]
PromptOpt = Annotated[str | None, typer.Option("--system-prompt", help="what the app does")]
KbOpt = Annotated[list[str] | None, typer.Option("--kb", help="knowledge base id or name (repeat)")]
TempOpt = Annotated[float | None, typer.Option(help="0-2")]
TokensOpt = Annotated[int | None, typer.Option(help="caps callers' max_tokens")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="chunks given to the model")]
ModeOpt = Annotated[str | None, typer.Option(help="vector, keyword or hybrid")]
FloorOpt = Annotated[float | None, typer.Option(help="drop chunks scoring below it")]


def _settings(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _show(app: dict[str, Any]) -> None:
    v = app["version"]
    say(f"app {app['name']}: call it as model={app['call_as']!r}")
    say(f"published version {app['published_version']} (latest {app['latest_version']})")
    say(f"version {v['version']}: model {v['model']}, top_k {v['top_k']}, {v['retrieval_mode']}")
    bases = ", ".join(b["name"] for b in app.get("bases", [])) or "none"
    say(f"knowledge bases: {bases}")
    shared = ", ".join(app["shared_keys"]) or "every key of the tenant"
    say(f"shared with: {shared}")


@apps_app.command("templates")
def list_templates(as_json: JsonOpt = False) -> None:
    """The industry templates ``apps create --from-template`` instantiates."""
    found = templates()
    if as_json:
        emit_json([{"name": t.name, "industry": t.industry, **t.title} for t in found.values()])
        return
    table = new_table("App templates", ("NAME", "INDUSTRY", "TITLE", "DOCUMENTS"), wrap=("TITLE",))
    for t in found.values():
        title = f"{t.title.get('en', '')} / {t.title.get('zh', '')}"
        table.add_row(cell(t.name), cell(t.industry), cell(title), cell(len(t.documents)))
    out.print(table)


@apps_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="NAME")] = None,
    from_template: Annotated[
        str | None, typer.Option("--from-template", help="see 'suanwang apps templates'")
    ] = None,
    name_opt: Annotated[str | None, typer.Option("--name", help="the app's name")] = None,
    model: ModelOpt = None,
    system_prompt: PromptOpt = None,
    kb: KbOpt = None,
    temperature: TempOpt = None,
    max_tokens: TokensOpt = None,
    top_k: TopKOpt = None,
    mode: ModeOpt = None,
    score_floor: FloorOpt = None,
    embedding_model: Annotated[
        str | None, typer.Option(help="with --from-template: the KB's ('none': keyword only)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an app (version 1, published), or one from an industry template."""
    st = cli_state(ctx, as_json)
    app_name = name_opt or name or from_template
    if app_name is None:
        raise CliError("name the app", field="NAME", hint="or use --from-template")
    with st.client() as api:
        if from_template is not None:
            try:
                tpl = template(from_template)
            except DomainError as exc:
                raise CliError(exc.message, field=exc.field, hint=exc.hint) from None
            app = instantiate(
                api, tpl, app_name, model=model, embedding_model=embedding_model,
                console=err, quiet=st.json,
            )  # fmt: skip
        else:
            body = _settings(
                model=model, system_prompt=system_prompt, knowledge_bases=kb,
                temperature=temperature, max_tokens=max_tokens, top_k=top_k,
                retrieval_mode=mode, score_floor=score_floor,
            )  # fmt: skip
            body.setdefault("system_prompt", "")
            app = api.call("POST", BASE, json={"name": app_name, **body})
    if st.json:
        emit_json(app)
        return
    _show(app)


@apps_app.command("list")
def list_apps(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Your tenant's apps."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        items = api.call("GET", BASE)
    if st.json:
        emit_json(items)
        return
    table = new_table("Apps", ("NAME", "CALL AS", "PUBLISHED", "LATEST", "TEMPLATE", "SHARED"))
    for a in items:
        shared = len(a["shared_keys"]) or "all keys"
        table.add_row(
            cell(a["name"]), cell(a["call_as"]), cell(a["published_version"]),
            cell(a["latest_version"]), cell(a["template"]), cell(shared),
        )  # fmt: skip
    out.print(table)


@apps_app.command("show")
def show(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[int | None, typer.Option(help="default: the published one")] = None,
    as_json: JsonOpt = False,
) -> None:
    """An app with its published version (or --version)."""
    st = cli_state(ctx, as_json)
    params = {"version": version} if version else None
    with st.client() as api:
        app = api.call("GET", f"{BASE}/{segment(name)}", params=params)
    if st.json:
        emit_json(app)
        return
    _show(app)
    say(f"system prompt: {app['version']['system_prompt']}")


@apps_app.command("update")
def update(
    ctx: typer.Context,
    name: NameArg,
    model: ModelOpt = None,
    system_prompt: PromptOpt = None,
    kb: KbOpt = None,
    temperature: TempOpt = None,
    max_tokens: TokensOpt = None,
    top_k: TopKOpt = None,
    mode: ModeOpt = None,
    score_floor: FloorOpt = None,
    publish: Annotated[bool, typer.Option(help="publish the new version")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Make a new version from the latest with these changes (published by default)."""
    st = cli_state(ctx, as_json)
    body = _settings(
        model=model, system_prompt=system_prompt, knowledge_bases=kb, temperature=temperature,
        max_tokens=max_tokens, top_k=top_k, retrieval_mode=mode, score_floor=score_floor,
    )  # fmt: skip
    with st.client() as api:
        app = api.call("PATCH", f"{BASE}/{segment(name)}", json={**body, "publish": publish})
    if st.json:
        emit_json(app)
        return
    say(f"version {app['version']['version']} made; published {app['published_version']}")


@apps_app.command("versions")
def versions(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """An app's versions, oldest first."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        items = api.call("GET", f"{BASE}/{segment(name)}/versions")
        app = api.call("GET", f"{BASE}/{segment(name)}")
    if st.json:
        emit_json(items)
        return
    table = new_table(
        "Versions", ("VERSION", "", "MODEL", "TOP K", "MODE", "PROMPT"), wrap=("PROMPT",)
    )
    for v in items:
        mark = "published" if v["version"] == app["published_version"] else ""
        table.add_row(
            cell(v["version"]), cell(mark), cell(v["model"]), cell(v["top_k"]),
            cell(v["retrieval_mode"]), cell(v["system_prompt"][:80]),
        )  # fmt: skip
    out.print(table)


@apps_app.command("publish")
def publish(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[int, typer.Argument(metavar="VERSION")],
    as_json: JsonOpt = False,
) -> None:
    """Publish VERSION (an older one: a rollback)."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        app = api.call("POST", f"{BASE}/{segment(name)}/publish", json={"version": version})
    if st.json:
        emit_json(app)
        return
    say(f"app {app['name']}: version {app['published_version']} published")


@apps_app.command("share")
def share(
    ctx: typer.Context,
    name: NameArg,
    key_ids: Annotated[
        list[str] | None, typer.Argument(metavar="KEY_ID...", help="none: every key")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restrict the app to these keys of your tenant (no key ids: every key of it)."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        app = api.call("PUT", f"{BASE}/{segment(name)}/sharing", json={"key_ids": key_ids or []})
    if st.json:
        emit_json(app)
        return
    say(f"app {app['name']} shared with: {', '.join(app['shared_keys']) or 'every key'}")


@apps_app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    with_knowledge_bases: Annotated[
        bool, typer.Option(help="also delete the knowledge bases no other app uses")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an app and all its versions."""
    st = cli_state(ctx, as_json)
    params = {"with_knowledge_bases": "true"} if with_knowledge_bases else None
    with st.client() as api:
        gone = api.call("DELETE", f"{BASE}/{segment(name)}", params=params)
    if st.json:
        emit_json(gone)
        return
    bases = ", ".join(k["name"] for k in gone["deleted_knowledge_bases"])
    say(f"deleted app {gone['app']['name']}" + (f" and knowledge bases {bases}" if bases else ""))
