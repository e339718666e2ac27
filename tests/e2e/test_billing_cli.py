"""``suanwang usage`` and ``suanwang bills`` against a real server: a job's card-time is
metered by the server's control loop and shows up in usage, bills and CSV."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

from test_cli import assert_error, ok

from conftest import Cli


def this_month() -> str:
    return time.strftime("%Y-%m", time.gmtime())


def wait_for_compute(cli: Cli, tenant: str, key: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        report = json.loads(ok(cli("usage", "--tenant", tenant, "--json", key=key)))
        compute = [t for t in report["totals"] if t["kind"] == "compute"]
        if compute or time.monotonic() > deadline:
            assert compute, report
            return dict(compute[0])
        time.sleep(0.2)


def test_a_jobs_card_time_is_billed(cli: Cli) -> None:
    ok(cli("tenants", "create", "metered"))
    key = ok(cli("keys", "create", "--tenant", "metered", "--scope", "tenant-admin", "-q")).strip()
    ok(
        cli(
            "jobs", "submit", "--chip", "ascend-910b", "--cards", "8",
            "--simulate-duration", "600", "--wait", "-q", key=key,
        )
    )  # fmt: skip
    total = wait_for_compute(cli, "metered", key)
    assert total["item"] == "ascend-910b"
    assert total["card_ms"] > 0

    bill = json.loads(ok(cli("bills", "show", "metered", this_month(), "--json", key=key)))
    (line,) = bill["lines"]
    assert (line["meter"], line["quantity"]) == ("card_ms", total["card_ms"])
    assert bill["total_micro"] == line["amount_micro"]

    text = ok(cli("bills", "show", "metered", this_month(), "--csv", key=key))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kind"] for r in rows] == ["compute", "total"]
    assert rows[0]["quantity"] == str(total["card_ms"])


def test_billing_errors_are_one_line_and_tables_render(cli: Cli) -> None:
    assert_error(cli("bills", "show", "demo", "2026-13"), "period")
    assert_error(cli("usage", "--from", "2026-11-01"), "--to")
    assert "demo is billed at tier edu" in ok(cli("bills", "tier", "demo", "edu"))
    assert "tier edu" in ok(cli("bills", "show", "demo", "2026-11"))
    assert "Usage" in ok(cli("usage"))
