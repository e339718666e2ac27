"""The tenant views' form parsers on hostile input: a replica count, and the quota form's
card counts (superscripts and 5,000-digit numbers are refused, never a 500)."""

from __future__ import annotations

import pytest

from suanwang.adapters.http.console.i18n import translator
from suanwang.adapters.http.console.model_pages import parse_replicas
from suanwang.adapters.http.console.tenant_pages import QuotaForm, parse_quota
from suanwang.domain.records import TenantRecord
from suanwang.domain.serving import MAX_REPLICAS


@pytest.mark.parametrize(
    ("typed", "count"),
    [("0", 0), (" 3 ", 3), (str(MAX_REPLICAS), MAX_REPLICAS), (str(MAX_REPLICAS + 1), None),
     ("-1", None), ("x", None), ("", None), ("1e3", None), ("²", None), ("9" * 40, None),
     ("９", 9)],  # a full-width digit, as a Chinese IME types it
)  # fmt: skip
def test_replica_count_parser(typed: str, count: int | None) -> None:
    assert parse_replicas(typed) == count


@pytest.mark.parametrize("typed", ["²", "9" * 5000, "-3", "1.5"])
def test_quota_form_refuses_odd_numbers_beside_the_field(typed: str) -> None:
    form = QuotaForm(values={"ascend": typed}, cohort="", weight="1")
    old = TenantRecord(id="t", display_name="t", created_at=0.0)
    assert parse_quota(form, old, translator("en")) is None
    assert set(form.errors) == {"quota.ascend"}
