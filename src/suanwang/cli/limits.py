"""``suanwang tenants limits …`` and ``suanwang keys limits …``: gateway rate limits and quotas.

Without options the command shows the limits; with options it changes only the limits
given (``--clear`` first removes them all). Unset limits are unlimited.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, emit_json, new_table, out, say, segment, state

ClearOpt = Annotated[bool, typer.Option("--clear", help="remove every limit first")]


def _show(title: str, limits: dict[str, Any]) -> None:
    table = new_table(title, ["limit", "value"], numbers=["value"])
    for name, value in limits.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        table.add_row(name, "unlimited" if shown is None else str(shown))
    out.print(table)


def _apply(
    ctx: typer.Context, path: str, changes: dict[str, Any], clear: bool, as_json: bool
) -> dict[str, Any]:
    st = state(ctx, as_json)
    with st.client() as api:
        current: dict[str, Any] = {} if clear else api.call("GET", path)
        if changes or clear:
            current = api.call("PUT", path, json=current | changes)
    if st.json:
        emit_json(current)
    return current


def tenant_limits(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="tenant name", show_default=False)],
    rpm: Annotated[int | None, typer.Option(min=0, help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(min=0, help="tokens per minute")] = None,
    token_quota: Annotated[int | None, typer.Option(min=0, help="tokens per period")] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="quota period: 'month' (calendar months, UTC) or 'seconds' (fixed windows "
            "of --period-s; the default)",
            show_default=False,
        ),
    ] = None,
    period_s: Annotated[
        int | None, typer.Option(min=60, help="quota period in seconds (default 30 days)")
    ] = None,
    clear: ClearOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or change a tenant's gateway limits (changing them: operator)."""
    if period_s is not None and period is None:
        period = "seconds"  # --period-s alone means fixed windows of that length
    changes = {
        k: v
        for k, v in {
            "rpm": rpm,
            "tpm": tpm,
            "token_quota": token_quota,
            "period_s": period_s,
            "period": period,
        }.items()
        if v is not None
    }
    limits = _apply(ctx, f"/api/v1/tenants/{segment(name)}/limits", changes, clear, as_json)
    if not as_json:
        if changes or clear:
            say(f"limits of tenant {name} set", style="green")
        _show(f"gateway limits of tenant {name}", limits)


def key_limits(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="the key's id (see 'keys list')")],
    rpm: Annotated[int | None, typer.Option(min=0, help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(min=0, help="tokens per minute")] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--model", help="allow only these models (repeatable)", show_default=False),
    ] = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="allow every model")] = False,
    clear: ClearOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or change one key's gateway limits and model allow-list (tenant admin)."""
    if models and all_models:
        raise CliError("give --model or --all-models, not both", field="--model")
    changes: dict[str, Any] = {k: v for k, v in {"rpm": rpm, "tpm": tpm}.items() if v is not None}
    if models:
        changes["models"] = models
    elif all_models:
        changes["models"] = None
    limits = _apply(ctx, f"/api/v1/keys/{segment(key_id)}/limits", changes, clear, as_json)
    if not as_json:
        if changes or clear:
            say(f"limits of key {key_id} set", style="green")
        _show(f"gateway limits of key {key_id}", limits)
