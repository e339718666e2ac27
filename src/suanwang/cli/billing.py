"""``suanwang usage`` and ``suanwang bills …``: metered usage and bills from the ledger."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, cell, emit_json, new_table, out, say, segment, state
from suanwang.domain.billing import BYTE_S_PER_GB_MONTH

bills_app = typer.Typer(help="Bills per tenant and period.", no_args_is_help=True)

CsvOpt = Annotated[bool, typer.Option("--csv", help="print CSV (for spreadsheets)")]
PeriodArg = Annotated[
    str,
    typer.Argument(metavar="PERIOD", help="YYYY-MM, or YYYY-MM-DD..YYYY-MM-DD (end day exclusive)"),
]


def period_param(period: str | None, start: str | None, end: str | None) -> str | None:
    """The API's ``period`` from ``--period`` or ``--from``/``--to`` (None: this month)."""
    if start or end:
        if period or not (start and end):
            raise CliError(
                "give --from and --to together, or --period alone",
                hint="e.g. --from 2026-11-01 --to 2026-11-15 (the end day is exclusive)",
            )
        return f"{start}..{end}"
    return period


def card_hours(card_ms: int) -> str:
    """Card-milliseconds as card-hours with three decimals."""
    return f"{card_ms / 3_600_000:,.3f}"


def usage(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option(help="one tenant (default: every tenant you may see)")
    ] = None,
    period: Annotated[
        str | None, typer.Option(help="YYYY-MM (default: this month)", show_default=False)
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="first day, YYYY-MM-DD", show_default=False)
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="day after the last, YYYY-MM-DD", show_default=False)
    ] = None,
    as_csv: CsvOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Metered usage from the ledger: tokens by model and card-hours by chip, per tenant."""
    st = state(ctx, as_json)
    params: dict[str, Any] = {"period": period_param(period, start, end), "tenant": tenant}
    params = {k: v for k, v in params.items() if v}
    with st.client() as api:
        if as_csv:
            sys.stdout.write(
                api.read_bytes("/api/v1/usage", params=params | {"format": "csv"}).decode()
            )
            return
        report = api.call("GET", "/api/v1/usage", params=params)
    if st.json:
        emit_json(report)
        return
    out.print(usage_table(report))


def usage_table(report: dict[str, Any]) -> Table:
    """A Rich table of usage totals."""
    columns = ("Tenant", "Kind", "Model / chip", "Entries", "Prompt", "Completion", "Card-hours")
    numbers = ("Entries", "Prompt", "Completion", "Card-hours")
    table = new_table(f"Usage {report['period']['name']}", columns, numbers=numbers)
    for t in report["totals"]:
        tokens = t["kind"] == "tokens"
        table.add_row(
            cell(t["tenant"]),
            cell(t["kind"]),
            cell(t["item"]),
            f"{t['entries']:,}",
            f"{t['prompt_tokens']:,}" if tokens else "-",
            f"{t['completion_tokens']:,}" if tokens else "-",
            "-" if tokens else _amount(t),
        )
    if not report["totals"]:
        table.caption = "no usage in this period"
    return table


@bills_app.command("show")
def show(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(metavar="TENANT", show_default=False)],
    period: PeriodArg,
    as_csv: CsvOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A tenant's bill for a period: one line per model and meter, and per chip."""
    st = state(ctx, as_json)
    path = f"/api/v1/tenants/{segment(tenant)}/bills/{segment(period)}"
    with st.client() as api:
        if as_csv:
            sys.stdout.write(api.read_bytes(path, params={"format": "csv"}).decode())
            return
        bill = api.call("GET", path)
    if st.json:
        emit_json(bill)
        return
    out.print(bill_table(bill))


def bill_table(bill: dict[str, Any]) -> Table:
    """A Rich table of a bill's lines with its total."""
    title = f"Bill {bill['tenant']} {bill['period']['name']} (tier {bill['tier']})"
    columns = ("Item", "Meter", "Quantity", "Unit price", "Per", "Amount")
    table = new_table(title, columns, numbers=("Quantity", "Unit price", "Per", "Amount"))
    for line in bill["lines"]:
        meter, quantity, per = _line_units(line)
        table.add_row(
            cell(line["item"]),
            meter,
            quantity,
            f"{line['unit_price_micro'] / 1e6:,.6f}",
            per,
            line["amount"],
        )
    table.add_section()
    table.add_row("total", "", "", "", "", bill["total"])
    return table


@bills_app.command("tier")
def set_tier(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(metavar="TENANT", show_default=False)],
    tier: Annotated[str, typer.Argument(metavar="TIER", help="e.g. standard or edu")],
) -> None:
    """Set a tenant's price tier (operator)."""
    with state(ctx).client() as api:
        api.call("PUT", f"/api/v1/tenants/{segment(tenant)}/tier", json={"tier": tier})
    say(f"{tenant} is billed at tier {tier}")


def _amount(total: dict[str, Any]) -> str:
    """A compute total in card-hours, a storage total in GB-months."""
    if total["kind"] == "storage":
        return f"{gb_months(total.get('byte_s', 0))} GB-mo"
    return card_hours(total["card_ms"])


def gb_months(byte_s: int) -> str:
    """Byte-seconds as GB-months (10^9 bytes for 30 days), three decimals."""
    return f"{byte_s / BYTE_S_PER_GB_MONTH:,.3f}"


def _line_units(line: dict[str, Any]) -> tuple[str, str, str]:
    """(meter, quantity, per) of a bill line as shown."""
    if line["meter"] == "card_ms":
        return "card-hours", card_hours(line["quantity"]), "card-hour"
    if line["meter"] == "byte_s":
        return "GB-months", gb_months(line["quantity"]), "GB-month"
    return line["meter"].replace("_", " "), f"{line['quantity']:,}", "1M tokens"
