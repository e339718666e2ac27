"""``suanwang audit``: who changed what, and when (operator: everything; tenant admin: its own).

Times take ``2026-12-01``, ``2026-12-01T08:00`` (local time unless an offset is given) or an
age such as ``30m``, ``12h`` or ``7d``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, cell, emit_json, new_table, out, state, when

AGE = re.compile(r"^(\d{1,6})([smhd])$")
AGE_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SHOWN = 60
"""Characters of one changed value shown in the table (``--json`` has everything)."""


def parse_time(text: str, option: str, now: float | None = None) -> float:
    """``text`` (an ISO date or time, or an age like ``12h``) as UNIX seconds."""
    age = AGE.match(text.strip())
    if age:
        return (now if now is not None else time.time()) - int(age[1]) * AGE_UNITS_S[age[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"{option} {text!r} is not a time",
            field=option,
            hint="e.g. 2026-12-01, 2026-12-01T08:00, 30m, 12h or 7d",
        ) from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


def change_text(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """The fields a change touched, as ``field: old → new`` (one per line)."""
    if before is None and after is None:
        return "-"
    if before is None:
        return "created: " + _short(after)
    if after is None:
        return "removed: " + _short(before)
    changed = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    lines = [f"{k}: {_short(before.get(k))} → {_short(after.get(k))}" for k in changed]
    return "\n".join(lines) or "no field changed"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def audit_table(entries: list[dict[str, Any]]) -> Table:
    """A Rich table of audit entries (newest first, as the API gives them); request ids and
    whole values are in ``--json``."""
    table = new_table("Audit log", ("When", "Who", "Action", "Object", "Change"), wrap=("Change",))
    for e in entries:
        actor = e["actor"]
        who = Text(actor["key_prefix"] or actor["key_id"])
        who.append(f"\n{actor['scope']}", style="dim")
        what = Text(e["resource_id"] or e["resource"])
        if e["tenant"] and e["tenant"] != e["resource_id"]:
            what.append(f"\ntenant {e['tenant']}", style="dim")
        table.add_row(
            when(e["at"], short=True),
            who,
            cell(e["action"]),
            what,
            cell(change_text(e["before"], e["after"])),
        )
    if not entries:
        table.caption = "no entries"
    return table


def audit(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option(help="from this time, or this long ago (7d)", show_default=False)
    ] = None,
    until: Annotated[str | None, typer.Option(help="before this time", show_default=False)] = None,
    tenant: Annotated[
        str | None, typer.Option(help="entries concerning one tenant", show_default=False)
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="e.g. key.create, quota.update", show_default=False)
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option(help="fleet, tenant, key, job or deployment", show_default=False),
    ] = None,
    resource_id: Annotated[
        str | None, typer.Option(help="one object (with --resource)", show_default=False)
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="the actor's key id", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="entries per page")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="continue from a page's next_cursor", show_default=False)
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="fetch every page")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: every change made through the API, newest first."""
    st = state(ctx, as_json)
    params: dict[str, Any] = {
        "since": None if since is None else parse_time(since, "--since"),
        "until": None if until is None else parse_time(until, "--until"),
        "tenant": tenant,
        "action": action,
        "resource": resource,
        "resource_id": resource_id,
        "actor": actor,
        "limit": limit,
        "cursor": cursor,
    }
    params = {k: v for k, v in params.items() if v is not None}
    entries: list[dict[str, Any]] = []
    with st.client() as api:
        while True:
            page = api.call("GET", "/api/v1/audit", params=params)
            entries += page["entries"]
            if not every or page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
    if st.json:
        emit_json({"entries": entries, "next_cursor": page["next_cursor"]})
        return
    table = audit_table(entries)
    if page["next_cursor"] is not None:
        table.caption = f"more: --cursor {page['next_cursor']} (or --all)"
    out.print(table)
