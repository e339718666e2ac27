"""``suanwang fleet …`` and ``suanwang demo load``: the shared infrastructure."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, cards_by_chip, cell, emit_json, new_table, out, say, state
from suanwang.cli.fleet_import import import_command

fleet_app = typer.Typer(
    help="Regions, clusters and nodes (simulated ones are labelled).", no_args_is_help=True
)
demo_app = typer.Typer(help="The demo fleet and tenant.", no_args_is_help=True)
fleet_app.command("import")(import_command)

SIMULATED_NOTE = (
    "SIMULATED clusters exist only in the scheduler's model: their jobs run on a "
    "simulated clock (submit them with --simulate-duration)."
)


def kind_text(simulated: bool) -> Text:
    """``SIMULATED`` (highlighted) or ``real``."""
    return Text("SIMULATED", style="bold yellow") if simulated else Text("real", style="green")


def _kinds(names: list[str]) -> str:
    counts = Counter(name.split("/", 1)[0] for name in names)
    return ", ".join(f"{n:,} {kind}{'' if n == 1 else 's'}" for kind, n in counts.items())


def apply_summary(result: dict[str, Any]) -> str:
    """One line describing an apply result (``created``/``updated``/``deleted`` counts)."""
    unchanged = int(result.get("unchanged", 0))
    if not result.get("changed"):
        return f"no change: the fleet already matches ({unchanged:,} objects unchanged)"
    parts = []
    for verb in ("created", "updated", "deleted"):
        names: list[str] = list(result.get(verb, []))
        detail = f" ({_kinds(names)})" if names else ""
        parts.append(f"{len(names):,} {verb}{detail}")
    return "fleet applied: " + ", ".join(parts) + f", {unchanged:,} unchanged"


def read_fleet_file(path: Path) -> bytes:
    """The bytes of a fleet file, or a CliError naming the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"no such file: {path}", field="FILE") from None
    except IsADirectoryError:
        raise CliError(f"{path} is a directory, not a fleet file", field="FILE") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", field="FILE") from None


@fleet_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="fleet file (YAML or JSON)", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Apply a fleet file: create, update and delete to match it. Applying twice is a no-op."""
    body = read_fleet_file(file)
    st = state(ctx, as_json)
    with st.client() as api:
        result = api.call(
            "POST",
            "/api/v1/fleet/apply",
            content=body,
            headers={"Content-Type": "application/yaml"},
        )
    if st.json:
        emit_json(result)
    else:
        say(apply_summary(result))


@fleet_app.command("show")
def show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Clusters with their region, kind (SIMULATED or real), backend, health, nodes and cards."""
    st = state(ctx, as_json)
    with st.client() as api:
        fleet = api.call("GET", "/api/v1/fleet")
    if st.json:
        emit_json(fleet)
        return
    out.print(clusters_table(fleet["clusters"]))
    for c in fleet["clusters"]:
        health = c.get("health") or {}
        if health.get("status") == "unhealthy":
            reason = health.get("reason", "")
            say(f"cluster {c['name']} is unhealthy{_checked(health)}: {reason}", style="red")
        for backend, block in (c.get("connection") or {}).items():
            tenants = block.get("tenants") or {}
            rest = {k: v for k, v in block.items() if k != "tenants"}
            say(f"cluster {c['name']} {backend}: {_fields(rest)}")
            for tenant, own in tenants.items():
                say(f"cluster {c['name']} {backend} tenant {tenant}: {_fields(own)}")
    for link in fleet["wan_links"]:
        a, b = link["between"]
        say(
            f"WAN link {a} <-> {b}: {link['bandwidth_gbps']:g} Gb/s, "
            f"{link['rtt_ms']:g} ms RTT, {link['distance_km']:,.0f} km"
        )
    if any(c["simulated"] for c in fleet["clusters"]):
        say(SIMULATED_NOTE, style="yellow")


def _fields(block: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in block.items() if v not in ("", [], {}))


def clusters_table(clusters: list[dict[str, Any]]) -> Table:
    """A Rich table of clusters."""
    table = new_table(
        "Clusters",
        ("Cluster", "Region", "Kind", "Health", "Nodes", "Cards by chip", "In use"),
        numbers=("Nodes", "In use"),
        wrap=("Cards by chip",),
    )
    for c in clusters:
        drained = int(c.get("nodes_drained", 0))
        table.add_row(
            cell(c["name"]),
            cell(c["region"]),
            _kind_backend(c),
            health_text(c.get("health") or {}),
            f"{c['nodes']:,}" + (f" ({drained:,} drained)" if drained else ""),
            cell(cards_by_chip(c["cards_by_chip"])),
            f"{c['cards_used']:,}",
        )
    if not clusters:
        table.caption = "the fleet is empty: 'suanwang demo load' or 'suanwang fleet apply FILE'"
    return table


def _kind_backend(cluster: dict[str, Any]) -> Text:
    """The kind, and the engine for Ray, Slurm and Kubernetes clusters (``real ray``)."""
    text = kind_text(cluster["simulated"])
    backend = str(cluster.get("backend", ""))
    if backend not in ("local", "simulated", ""):
        text.append(f" {backend}")
    return text


def health_text(health: dict[str, Any]) -> Text:
    """``ok`` / ``UNHEALTHY`` (red) / ``-`` (not checked yet)."""
    status = str(health.get("status", "unchecked"))
    if status == "unhealthy":
        return Text("UNHEALTHY", style="bold red")
    return Text("ok", style="green") if status == "healthy" else Text("-", style="dim")


def _checked(health: dict[str, Any]) -> str:
    at = health.get("checked_at")
    return f" (checked {time.strftime('%H:%M:%S', time.gmtime(float(at)))} UTC)" if at else ""


@fleet_app.command("totals")
def totals(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Cards by chip and dense FP16 PFLOPS, per region and overall."""
    st = state(ctx, as_json)
    with st.client() as api:
        data = api.call("GET", "/api/v1/fleet/totals")
    if st.json:
        emit_json(data)
    else:
        out.print(totals_table(data))


def totals_table(data: dict[str, Any]) -> Table:
    """A Rich table of fleet totals (dense FP16 PFLOPS): one row per region and overall."""
    numbers = ("Cards", "PFLOPS", "Simulated", "Real")
    table = new_table(
        "Fleet totals",
        ("Region", "Cards by chip", *numbers),
        numbers=numbers,
    )
    rows = [*data["regions"], {**data["overall"], "scope": "all regions"}]
    for i, t in enumerate(rows):
        table.add_row(
            cell(t["scope"]),
            cell(cards_by_chip(t["cards_by_chip"])),
            f"{t['cards']:,}",
            f"{t['pflops_fp16']:,.1f}",
            f"{t['simulated_cards']:,}",
            f"{t['real_cards']:,}",
            style="bold" if i == len(rows) - 1 else None,
            end_section=i == len(rows) - 2,
        )
    return table


@fleet_app.command("nodes")
def nodes(
    ctx: typer.Context,
    cluster: Annotated[str | None, typer.Option(help="only this cluster")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every node with its chip, cards in use and state."""
    st = state(ctx, as_json)
    with st.client() as api:
        data = api.call(
            "GET", "/api/v1/fleet/nodes", params={"cluster": cluster} if cluster else None
        )
    if st.json:
        emit_json(data)
        return
    table = new_table(
        f"Nodes of {cluster}" if cluster else "Nodes",
        ("Node", "Cluster", "Region", "Kind", "Chip", "Used", "Group", "State"),
        numbers=("Used",),
    )
    for n in data:
        table.add_row(
            cell(n["name"]),
            cell(n["cluster"]),
            cell(n["region"]),
            kind_text(n["simulated"]),
            cell(n["chip"]),
            f"{n['cards_used']}/{n['cards']}",
            cell(n["network_group"]),
            cell(n["state"]),
        )
    out.print(table)


@fleet_app.command("chips")
def chips(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The chip catalogue (* marks figures that are uncertain)."""
    st = state(ctx, as_json)
    with st.client() as api:
        data = api.call("GET", "/api/v1/chips")
    if st.json:
        emit_json(data)
        return
    numbers = ("Memory GB", "FP16 TFLOPS", "BF16 TFLOPS")
    table = new_table(
        "Chips", ("Chip", "Vendor", "Family", *numbers, "Stack"), numbers=numbers, wrap=("Vendor",)
    )
    table.caption = "* published figures uncertain"
    for c in data:
        mark = "*" if c["figures_uncertain"] else ""
        table.add_row(
            cell(c["name"] + mark),
            cell(c["vendor"]),
            cell(c["family"]),
            f"{c['memory_gb']}",
            f"{c['fp16_tflops']:g}",
            f"{c['bf16_tflops']:g}",
            cell(c["stack"]),
        )
    out.print(table)


@fleet_app.command("classes")
def priority_classes(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The priority classes a job may name (suanwang jobs submit --priority-class NAME)."""
    st = state(ctx, as_json)
    with st.client() as api:
        data = api.call("GET", "/api/v1/priority-classes")
    if st.json:
        emit_json(data)
        return
    table = new_table(
        "Priority classes", ("Class", "Priority", "Preemptible", "Description"),
        numbers=("Priority",), wrap=("Description",),
    )  # fmt: skip
    for c in data:
        table.add_row(
            cell(c["name"]), str(c["value"]), "yes" if c["preemptible"] else "no",
            cell(c["description"]),
        )  # fmt: skip
    out.print(table)


@demo_app.command("load")
def load(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Apply the demo fleet (simulated Lingang and Ningxia clusters plus this machine)."""
    st = state(ctx, as_json)
    with st.client() as api:
        result = api.call("POST", "/api/v1/demo/load")
    if st.json:
        emit_json(result)
    else:
        say(apply_summary(result).replace("fleet applied", "demo loaded", 1))
