"""``suanwang models external``: OpenAI-compatible endpoints suanwang does not run (operator).

The credential is read from an environment variable (``--credential-env``) or standard input
(``--credential-stdin``), never from the command line, where ``ps`` and shell history would
show it. ``rotate-key`` runs on the server machine: it puts a new credential encryption key
first and re-encrypts every stored credential with it.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from suanwang.cli.client import CliError
from suanwang.cli.common import (
    JsonOpt,
    cell,
    emit_json,
    emit_line,
    load_settings,
    new_table,
    out,
    say,
    segment,
)
from suanwang.cli.common import state as cli_state

external_app = typer.Typer(
    help="External OpenAI-compatible endpoints served as deployments (operator).",
    no_args_is_help=True,
)
CredentialEnv = Annotated[
    str | None,
    typer.Option(help="read the upstream credential from this environment variable"),
]
CredentialStdin = Annotated[
    bool, typer.Option("--credential-stdin", help="read the upstream credential from stdin")
]
PrivateOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-network",
        help="exempt this endpoint from the SSRF rules (loopback, private, link-local addresses)",
    ),
]


def _credential(env: str | None, stdin: bool) -> str | None:
    if env and stdin:
        raise CliError("give --credential-env or --credential-stdin, not both")
    if env:
        value = os.environ.get(env)
        if not value:
            raise CliError(f"environment variable {env} is not set", field="--credential-env")
        return value.strip()
    if stdin:
        value = sys.stdin.readline().strip()
        if not value:
            raise CliError("no credential on standard input", field="--credential-stdin")
        return value
    return None


@external_app.command("add")
def add(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="the name clients call")],
    base_url: Annotated[str, typer.Option(help="e.g. https://vllm.example.com/v1")],
    credential_env: CredentialEnv = None,
    credential_stdin: CredentialStdin = False,
    upstream_model: Annotated[
        str | None, typer.Option(help="model name sent upstream (default: MODEL)")
    ] = None,
    health_check: Annotated[
        str, typer.Option(help="models: GET /v1/models with the credential; health: GET /health")
    ] = "models",
    kind: Annotated[str, typer.Option(help="chat or embedding")] = "chat",
    price_in: Annotated[
        int | None, typer.Option(help="micro-units per 1M prompt tokens (non-catalogue models)")
    ] = None,
    price_out: Annotated[
        int | None, typer.Option(help="micro-units per 1M completion tokens")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="private to this tenant")] = None,
    allow_private_network: PrivateOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the id")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register an OpenAI-compatible server as a deployment of MODEL."""
    body: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "credential": _credential(credential_env, credential_stdin),
        "upstream_model": upstream_model,
        "health_check": health_check,
        "kind": kind,
        "tenant": tenant,
        "allow_private_network": allow_private_network,
    }
    if price_in is not None or price_out is not None:
        body |= {"input_per_million": price_in or 0, "output_per_million": price_out or 0}
    st = cli_state(ctx, as_json)
    with st.client() as api:
        ext = api.call("POST", "/api/v1/external-endpoints", json=body)
    _report(ext, f"registered {ext['model']} at {ext['base_url']} as {ext['id']}", quiet, st.json)


@external_app.command("list")
def list_external(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Registered endpoints, their health and whether a credential is set."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        items = api.call("GET", "/api/v1/external-endpoints")
    if st.json:
        emit_json(items)
        return
    out.print(_table(items))


@external_app.command("show")
def show(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    as_json: JsonOpt = False,
) -> None:
    """One endpoint (the credential is never shown: only whether one is set)."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        ext = api.call("GET", f"/api/v1/external-endpoints/{segment(deployment)}")
    if st.json:
        emit_json(ext)
        return
    out.print(_table([ext]))
    say(f"  reason: {ext['reason']}")


@external_app.command("update")
def update(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    base_url: Annotated[str | None, typer.Option(help="a new base URL")] = None,
    upstream_model: Annotated[str | None, typer.Option(help="a new upstream model name")] = None,
    health_check: Annotated[str | None, typer.Option(help="models or health")] = None,
    allow_private_network: Annotated[
        bool | None,
        typer.Option("--allow-private-network/--deny-private-network", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an endpoint's URL, upstream model, health check or SSRF exemption."""
    body = {
        k: v
        for k, v in {
            "base_url": base_url,
            "upstream_model": upstream_model,
            "health_check": health_check,
            "allow_private_network": allow_private_network,
        }.items()
        if v is not None
    }
    _patch(ctx, deployment, body, as_json, "updated")


@external_app.command("rotate-credential")
def rotate_credential(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    credential_env: CredentialEnv = None,
    credential_stdin: CredentialStdin = False,
    remove: Annotated[
        bool, typer.Option("--remove", help="send no credential from now on")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace the credential sent upstream (or remove it)."""
    new = _credential(credential_env, credential_stdin)
    if (new is None) != remove:
        raise CliError("give --credential-env, --credential-stdin or --remove", field="credential")
    _patch(ctx, deployment, {"credential": new}, as_json, "credential replaced")


@external_app.command("remove")
def remove(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(metavar="DEPLOYMENT")],
    as_json: JsonOpt = False,
) -> None:
    """Stop routing to the endpoint and erase its stored credential."""
    st = cli_state(ctx, as_json)
    with st.client() as api:
        ext = api.call("DELETE", f"/api/v1/external-endpoints/{segment(deployment)}")
    _report(ext, f"removed {ext['id']}", False, st.json)


@external_app.command("rotate-key")
def rotate_key(
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="keep only the new key once re-encrypted")
    ] = False,
) -> None:
    """On the server machine: new credential encryption key first, then re-encrypt every
    stored credential (with SUANWANG_CREDENTIAL_KEYS set, put the new key first there)."""
    from suanwang.adapters.crypto import KEY_FILE, KEYS_ENV, drop_old_keys, rotate_key_file
    from suanwang.bootstrap import build_platform

    settings = load_settings()
    if os.environ.get(KEYS_ENV):
        platform = build_platform(settings)
        count = platform.externals.reseal_all()
        say(f"re-encrypted {count} credential(s) under the first key of {KEYS_ENV}")
        return
    key_file = settings.data_dir / KEY_FILE
    platform = build_platform(settings)  # creates the key file on a fresh installation
    rotate_key_file(key_file)
    platform = build_platform(settings, run_migrations=False)  # opens with the new key first
    count = platform.externals.reseal_all()
    if drop_old:
        drop_old_keys(key_file)
    say(f"re-encrypted {count} credential(s) under a new key in {key_file}", style="green")


def _patch(
    ctx: typer.Context, deployment: str, body: dict[str, Any], as_json: bool, what: str
) -> None:
    st = cli_state(ctx, as_json)
    with st.client() as api:
        ext = api.call("PATCH", f"/api/v1/external-endpoints/{segment(deployment)}", json=body)
    _report(ext, f"{ext['id']}: {what}", False, st.json)


def _report(ext: dict[str, Any], message: str, quiet: bool, as_json: bool) -> None:
    if quiet:
        emit_line(ext["id"])
    elif as_json:
        emit_json(ext)
    else:
        say(message, style="green")
        out.print(_table([ext]))


def _table(items: list[dict[str, Any]]) -> Any:
    columns = (
        "Id",
        "Model",
        "Owner",
        "Base URL",
        "Upstream model",
        "Health",
        "Credential",
        "State",
    )
    table = new_table("External endpoints", columns, wrap=("Base URL",))
    for e in items:
        table.add_row(
            cell(e["id"]),
            cell(e["model"]),
            cell("public" if e["public"] else e["tenant"]),
            cell(
                e["base_url"] + (" (private network allowed)" if e["allow_private_network"] else "")
            ),
            cell(e["upstream_model"] or "-"),
            cell(e["health_check"]),
            cell("set" if e["has_credential"] else "none"),
            cell(e["replica_state"] if e["state"] == "active" else e["state"]),
        )
    return table
