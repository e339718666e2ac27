"""``suanwang models`` (catalogue, deploy, scale) and ``suanwang deployments`` (list, delete)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.autoscale import (
    AutoscaleArgs,
    DownOpt,
    IdleOpt,
    InflightOpt,
    MaxOpt,
    MinOpt,
    SloOpt,
    TokensOpt,
    TtftOpt,
    UpOpt,
    autoscale_text,
)
from suanwang.cli.common import JsonOpt, cell, emit_json, emit_line, new_table, out, say, segment
from suanwang.cli.common import state as cli_state
from suanwang.cli.fleet import kind_text

models_app = typer.Typer(help="The model catalogue; deploy and scale models.", no_args_is_help=True)
deployments_app = typer.Typer(help="Model deployments and their replicas.", no_args_is_help=True)

REPLICA_STYLES = {
    "ready": "green",
    "starting": "cyan",
    "pending": "blue",
    "unhealthy": "red",
    "draining": "yellow",
    "stopped": "dim",
}


def _price(prices: dict[str, Any], tier: str = "standard") -> str:
    p = prices.get(tier)
    if not p:
        return "-"
    return f"{p['input_per_million'] / 1e6:g} / {p['output_per_million'] / 1e6:g}"


@models_app.command("list")
def list_models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The model catalogue: size, context, engines, chips and standard price per 1M tokens."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        models = api.call("GET", "/api/v1/models")
    if st.json:
        emit_json(models)
        return
    columns = ("Model", "Kind", "Params (B)", "Context", "Engines", "Chips", "Price in/out")
    table = new_table(
        "Models (price: currency units per 1M tokens)",
        columns,
        numbers=("Params (B)", "Context"),
        wrap=("Engines", "Chips"),
    )
    for m in models:
        table.add_row(
            cell(m["name"]),
            cell(m["kind"]),
            cell(f"{m['params_b']:g}"),
            cell(f"{m['context_length']:,}"),
            cell(", ".join(m["engines"])),
            cell(", ".join(m["chips"])),
            cell(_price(m["prices"])),
        )
    out.print(table)


@models_app.command("show")
def show_model(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """One catalogue entry, with prices per tenant tier."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        m = api.call("GET", f"/api/v1/models/{segment(name)}")
    if st.json:
        emit_json(m)
        return
    say(f"{m['name']} ({m['family']}, {m['kind']}): {m['description']}")
    say(f"  {m['params_b']:g} B parameters, context {m['context_length']:,}, {m['cards']} card(s)")
    say(f"  engines: {', '.join(m['engines'])}; chips: {', '.join(m['chips'])}")
    for tier in m["prices"]:
        say(f"  price ({tier}): {_price(m['prices'], tier)} per 1M tokens in/out")


@models_app.command("deploy")
def deploy(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", show_default=False)],
    cluster: Annotated[str, typer.Option(help="the cluster to run on", show_default=False)],
    replicas: Annotated[int, typer.Option(help="replicas to run")] = 1,
    engine: Annotated[
        str | None, typer.Option(help="default: the model's engine for the chip")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="operator: deploy privately for this tenant")
    ] = None,
    min_replicas: MinOpt = None,
    max_replicas: MaxOpt = None,
    target_inflight: InflightOpt = None,
    target_ttft_p95_ms: TtftOpt = None,
    target_tokens_per_s: TokensOpt = None,
    target_slo_ttft_p95_ms: SloOpt = None,
    scale_up_cooldown_s: UpOpt = None,
    scale_down_cooldown_s: DownOpt = None,
    idle_to_zero_s: IdleOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the id")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy MODEL: each replica is a job the scheduler places on the cluster.

    With --min-replicas, --max-replicas and one --target-*, the deployment scales with its
    demand (--replicas is then the starting count)."""
    scaling = AutoscaleArgs(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        inflight=target_inflight,
        ttft_p95_ms=target_ttft_p95_ms,
        tokens_per_s=target_tokens_per_s,
        slo_ttft_p95_ms=target_slo_ttft_p95_ms,
        up_cooldown_s=scale_up_cooldown_s,
        down_cooldown_s=scale_down_cooldown_s,
        idle_to_zero_s=idle_to_zero_s,
    )
    body = {
        "model": model,
        "cluster": cluster,
        "replicas": replicas,
        "engine": engine,
        "tenant": tenant,
        "autoscale": scaling.body() if scaling.given else None,
    }
    st = cli_state(ctx, as_json)
    with st.client() as api:
        dep = api.call("POST", "/api/v1/deployments", json=body)
    _report(dep, f"deployed {dep['model']} as {dep['id']}", quiet=quiet, as_json=st.json)


@models_app.command("scale")
def scale(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT", show_default=False)],
    replicas: Annotated[int, typer.Argument(metavar="N", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Set a deployment's replica count (0 stops every replica but keeps the deployment)."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        path = f"/api/v1/deployments/{segment(deployment)}/replicas"
        dep = api.call("PUT", path, json={"replicas": replicas})
    _report(dep, f"{dep['id']} scaled to {dep['replicas']}", quiet=False, as_json=st.json)


@deployments_app.command("autoscale")
def autoscale(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT", show_default=False)],
    min_replicas: MinOpt = None,
    max_replicas: MaxOpt = None,
    target_inflight: InflightOpt = None,
    target_ttft_p95_ms: TtftOpt = None,
    target_tokens_per_s: TokensOpt = None,
    target_slo_ttft_p95_ms: SloOpt = None,
    scale_up_cooldown_s: UpOpt = None,
    scale_down_cooldown_s: DownOpt = None,
    idle_to_zero_s: IdleOpt = None,
    off: Annotated[bool, typer.Option("--off", help="back to a fixed replica count")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Scale a deployment with its demand between --min-replicas and --max-replicas."""
    st = cli_state(ctx, as_json)
    path = f"/api/v1/deployments/{segment(deployment)}/autoscale"
    with st.client() as api:
        if off:
            dep = api.call("DELETE", path)
        else:
            scaling = AutoscaleArgs(
                min_replicas=min_replicas,
                max_replicas=max_replicas,
                inflight=target_inflight,
                ttft_p95_ms=target_ttft_p95_ms,
                tokens_per_s=target_tokens_per_s,
                slo_ttft_p95_ms=target_slo_ttft_p95_ms,
                up_cooldown_s=scale_up_cooldown_s,
                down_cooldown_s=scale_down_cooldown_s,
                idle_to_zero_s=idle_to_zero_s,
            )
            dep = api.call("PUT", path, json=scaling.body())
    message = f"{dep['id']}: {autoscale_text(dep.get('autoscale'))}, {dep['replicas']} wanted"
    _report(dep, message, quiet=False, as_json=st.json)


@deployments_app.command("list")
def list_deployments(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Deployments you can see (public ones and your tenant's), with their replicas."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        deps = api.call("GET", "/api/v1/deployments")
    if st.json:
        emit_json(deps)
        return
    out.print(deployments_table(deps))


@deployments_app.command("show")
def show_deployment(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """One deployment and each replica's state, reason and address."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        dep = api.call("GET", f"/api/v1/deployments/{segment(deployment)}")
    if st.json:
        emit_json(dep)
        return
    out.print(deployments_table([dep]))
    out.print(replicas_table(dep["replica_list"]))


@deployments_app.command("delete")
def delete(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Stop every replica and delete the deployment."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        dep = api.call("DELETE", f"/api/v1/deployments/{segment(deployment)}")
    _report(dep, f"deleted {dep['id']}", quiet=False, as_json=st.json)


def _report(dep: dict[str, Any], message: str, *, quiet: bool, as_json: bool) -> None:
    if quiet:
        emit_line(dep["id"])
    elif as_json:
        emit_json(dep)
    else:
        say(message, style="green")
        out.print(replicas_table(dep["replica_list"]))


def deployments_table(deps: Iterable[dict[str, Any]]) -> Table:
    columns = ("Id", "Model", "Owner", "Cluster", "Kind", "Engine", "Chip", "Ready", "Scaling")
    table = new_table("Deployments", columns, numbers=("Ready",))
    for d in deps:
        table.add_row(
            cell(d["id"]),
            cell(d["model"]),
            cell("public" if d["public"] else d["tenant"]),
            cell(d["cluster"]),
            kind_text(d["simulated"]),
            cell(d["engine"]),
            cell(d["chip"]),
            cell(f"{d['ready']}/{d['replicas']}"),
            cell(autoscale_text(d.get("autoscale"))),
        )
    return table


def replicas_table(replicas: Iterable[dict[str, Any]]) -> Table:
    columns = ("Replica", "State", "Kind", "Address", "Restarts", "Reason")
    table = new_table("Replicas", columns, numbers=("Restarts",), wrap=("Reason",))
    for r in replicas:
        table.add_row(
            cell(r["id"]),
            Text(r["state"], style=REPLICA_STYLES.get(r["state"], "")),
            kind_text(r["simulated"]),
            cell(r["base_url"] or "-"),
            cell(r["restarts"]),
            cell(r["reason"]),
        )
    return table
