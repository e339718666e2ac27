"""``suanwang agents``: register transfer agents, list them, rotate their certificates.

Registration and rotation write the agent's certificate, key and the CA's certificate to
``--out`` (0600 files); the operator copies them to the agent's host and starts
``suanwang agent serve`` with them (the command is printed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, emit_json, new_table, out, say, segment, state, when

agents_app = typer.Typer(
    help="Transfer agents (operator): register, list, rotate certificates.", no_args_is_help=True
)
OutOpt = Annotated[
    Path, typer.Option("--out", help="directory for NAME.pem, NAME.key and ca.pem (made 0700)")
]


def _write_files(out_dir: Path, issued: dict[str, Any]) -> tuple[Path, Path, Path]:
    name = issued["agent"]["name"]
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths = (out_dir / f"{name}.pem", out_dir / f"{name}.key", out_dir / "ca.pem")
        for path, text in zip(
            paths, (issued["cert_pem"], issued["key_pem"], issued["ca_pem"]), strict=True
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
    except OSError as exc:
        raise CliError(f"--out {out_dir}: {exc.strerror}", field="--out") from None
    return paths


def _report(issued: dict[str, Any], out_dir: Path, as_json: bool) -> None:
    cert, key, ca = _write_files(out_dir, issued)
    agent = issued["agent"]
    if as_json:
        emit_json(agent | {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca)})
        return
    say(f"agent {agent['name']} in {agent['region']} at {agent['address']}: certificate "
        f"{agent['cert_serial'][:16]} valid until {when(agent['cert_not_after'])}")  # fmt: skip
    say(
        f"start it with: suanwang agent serve --region {agent['region']} --root STORAGE_ROOT/"
        f"{agent['region']} --listen {agent['address']} --cert {cert} --key {key} --ca {ca}"
    )


@agents_app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    region: Annotated[str, typer.Option(help="the region whose storage root it serves")],
    address: Annotated[str, typer.Option(help="HOST:PORT it listens on")],
    out_dir: OutOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Register a region's agent; its certificate and key are written to --out."""
    st = state(ctx, as_json)
    body = {"name": name, "region": region, "address": address}
    with st.client() as api:
        issued = api.call("POST", "/api/v1/agents", json=body)
    _report(issued, out_dir, st.json)


@agents_app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    out_dir: OutOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Issue an agent a new certificate (restart it with the new files)."""
    st = state(ctx, as_json)
    with st.client() as api:
        issued = api.call("POST", f"/api/v1/agents/{segment(name)}/rotate")
    _report(issued, out_dir, st.json)


@agents_app.command("list")
def list_agents(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered agents and when their certificates expire."""
    st = state(ctx, as_json)
    with st.client() as api:
        found = api.call("GET", "/api/v1/agents")
    if st.json:
        emit_json(found)
        return
    table = new_table("Agents", ("Name", "Region", "Address", "Certificate until"))
    for a in found:
        table.add_row(a["name"], a["region"], a["address"], when(a["cert_not_after"]))
    if not found:
        table.caption = "no agents"
    out.print(table)
