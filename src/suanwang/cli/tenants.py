"""``suanwang tenants …`` and ``suanwang keys …``: who may use the platform."""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.client import CliError
from suanwang.cli.common import (
    JsonOpt,
    cell,
    emit_json,
    emit_line,
    new_table,
    note,
    out,
    parse_quota,
    quota_text,
    say,
    segment,
    state,
    when,
)

tenants_app = typer.Typer(
    help="Tenants and their quotas (cards per chip family).", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)

CohortOpt = Annotated[
    str | None, typer.Option(help="cohort whose tenants lend and borrow idle quota")
]
WeightOpt = Annotated[float, typer.Option(help="fair-share weight within the cohort")]
QuotaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--quota",
        help="FAMILY=CARDS, or FAMILY=NOMINAL:BORROW[:LEND] for tenants in a cohort "
        "('-' = no limit); FAMILY may be 'units' (V100-equivalents); repeatable",
        show_default=False,
    ),
]


class KeyScope(enum.StrEnum):
    """Key scopes, broadest first."""

    OPERATOR = "operator"
    TENANT_ADMIN = "tenant-admin"
    TENANT_MEMBER = "tenant-member"
    READ_ONLY = "read-only"


def tenant_table(tenants: list[dict[str, Any]]) -> Table:
    """A Rich table of tenants."""
    table = new_table(
        "Tenants", ("Tenant", "Display name", "Quota", "Created"), wrap=("Display name", "Quota")
    )
    for t in tenants:
        table.add_row(
            cell(t["name"]),
            cell(t["display_name"]),
            cell(quota_text(t["quota"])),
            when(t["created_at"], short=True),
        )
    return table


@tenants_app.command("create")
def create_tenant(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="3-40 lowercase letters, digits and '-'", show_default=False)
    ],
    display_name: Annotated[str, typer.Option(help="human-readable name")] = "",
    quota: QuotaOpt = None,
    cohort: CohortOpt = None,
    weight: WeightOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant (operator). Outside a cohort, families without a quota are unlimited."""
    body = {
        "name": name,
        "display_name": display_name,
        "quota": parse_quota(quota or []),
        "cohort": cohort,
        "weight": weight,
    }
    st = state(ctx, as_json)
    with st.client() as api:
        tenant = api.call("POST", "/api/v1/tenants", json=body)
    if st.json:
        emit_json(tenant)
        return
    say(f"created tenant {tenant['name']} (quota: {quota_text(tenant['quota'])})", style="green")
    note(f"next: suanwang keys create --tenant {tenant['name']} --scope tenant-admin")


@tenants_app.command("list")
def list_tenants(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """All tenants (a tenant key sees only its own)."""
    st = state(ctx, as_json)
    with st.client() as api:
        tenants = api.call("GET", "/api/v1/tenants")
    if st.json:
        emit_json(tenants)
    else:
        out.print(tenant_table(tenants))


@tenants_app.command("show")
def show_tenant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="tenant name", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """One tenant and its quota."""
    st = state(ctx, as_json)
    with st.client() as api:
        tenant = api.call("GET", f"/api/v1/tenants/{segment(name)}")
    if st.json:
        emit_json(tenant)
    else:
        out.print(tenant_table([tenant]))


@tenants_app.command("set-quota")
def set_quota(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="tenant name", show_default=False)],
    quota: QuotaOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove every limit")] = False,
    cohort: CohortOpt = None,
    weight: WeightOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Replace a tenant's quota, cohort and weight (operator)."""
    if not quota and not clear:
        raise CliError("give at least one --quota FAMILY=CARDS, or --clear", field="--quota")
    st = state(ctx, as_json)
    with st.client() as api:
        tenant = api.call(
            "PUT",
            f"/api/v1/tenants/{segment(name)}/quota",
            json={"quota": parse_quota(quota or []), "cohort": cohort, "weight": weight},
        )
    if st.json:
        emit_json(tenant)
    else:
        say(f"quota of {tenant['name']}: {quota_text(tenant['quota'])}", style="green")


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="tenant the key is for")] = None,
    scope: Annotated[KeyScope, typer.Option(help="what the key may do")] = KeyScope.TENANT_MEMBER,
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    expires_in: Annotated[
        int | None, typer.Option("--expires-in", help="lifetime in seconds (default: no expiry)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the key")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a key. The key is shown ONCE: store it now."""
    body = {"tenant": tenant, "scope": scope.value, "name": name, "expires_in_s": expires_in}
    st = state(ctx, as_json)
    with st.client() as api:
        created = api.call("POST", "/api/v1/keys", json=body)
    if quiet:
        emit_line(created["key"])
    elif st.json:
        emit_json(created)
    else:
        _show_created(created)


def _show_created(created: dict[str, Any]) -> None:
    owner = created["tenant"] or "the platform"
    say(
        f"created {created['scope']} key {created['id']} for {owner} "
        f"(expires: {when(created['expires_at']) if created['expires_at'] else 'never'})",
        style="green",
    )
    emit_line(created["key"])
    note(
        "This key will not be shown again: store it now, e.g. "
        "export SUANWANG_API_KEY=<the key above>",
        style="bold yellow",
    )


def _status(key: dict[str, Any]) -> Text:
    expires = key["expires_at"]
    if key["revoked_at"] is not None:
        return Text("revoked", style="red")
    if expires is not None and expires <= time.time():
        return Text("expired", style="red")
    until = f" until {when(expires, short=True)}" if expires is not None else ""
    return Text("active" + until, style="green")


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keys (their ids and prefixes, never the keys themselves)."""
    st = state(ctx, as_json)
    with st.client() as api:
        keys = api.call("GET", "/api/v1/keys", params={"tenant": tenant} if tenant else None)
    if st.json:
        emit_json(keys)
        return
    table = new_table(
        "API keys",
        ("Id", "Prefix", "Tenant", "Scope", "Name", "Created", "Status"),
        wrap=("Name",),
    )
    for k in keys:
        table.add_row(
            cell(k["id"]),
            cell(k["prefix"]),
            cell(k["tenant"]),
            cell(k["scope"]),
            cell(k["name"]),
            when(k["created_at"], short=True),
            _status(k),
        )
    out.print(table)


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context,
    key_id: Annotated[
        str, typer.Argument(help="the key's id (see 'keys list')", show_default=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key; it stops working at once."""
    st = state(ctx, as_json)
    with st.client() as api:
        key = api.call("DELETE", f"/api/v1/keys/{segment(key_id)}")
    if st.json:
        emit_json(key)
    else:
        say(f"revoked key {key['id']} ({key['prefix']})", style="green")
