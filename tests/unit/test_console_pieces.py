"""The console's pure pieces: the message catalogue, paging, the quota form's parser and
the session/CSRF token relations."""

from __future__ import annotations

import re
from pathlib import Path

from suanwang.adapters.http.console import i18n
from suanwang.adapters.http.console.i18n import MESSAGES, pick_lang, translator
from suanwang.adapters.http.console.paging import page_number, slice_page
from suanwang.adapters.http.console.tenant_pages import QuotaForm, parse_quota
from suanwang.adapters.http.console.web import HERE, PAGE_SIZE
from suanwang.domain.console_sessions import csrf_matches, csrf_token, hash_session_id
from suanwang.domain.records import TenantRecord
from suanwang.domain.tenancy import QuotaSpec

USED_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+)["']""")


def test_both_languages_have_every_key_the_templates_use() -> None:
    assert set(MESSAGES["zh"]) == set(MESSAGES["en"])
    used = set()
    for path in (HERE / "templates").glob("*.html"):
        used |= set(USED_KEY.findall(path.read_text(encoding="utf-8")))
    for path in Path(HERE).glob("*.py"):
        used |= set(USED_KEY.findall(path.read_text(encoding="utf-8")))
    assert used
    assert used <= set(MESSAGES["zh"]), used - set(MESSAGES["zh"])


def test_no_two_page_groups_define_the_same_label() -> None:
    seen: set[str] = set()
    for part in i18n.PARTS:
        assert set(part["zh"]) == set(part["en"])
        assert not set(part["zh"]) & seen, set(part["zh"]) & seen
        seen |= set(part["zh"])


def test_language_choice_and_fallbacks() -> None:
    assert pick_lang(None, None) == "zh"
    assert pick_lang("en", "zh") == "en"
    assert pick_lang("xx", "en") == "en"
    assert translator("zh")("fleet") == "算力总览"
    assert translator("en")("fleet") == "Fleet"
    assert translator("en")("no-such-key") == "no-such-key"
    assert translator("en")("page", n=3) == "Page 3"


def test_paging() -> None:
    items = list(range(PAGE_SIZE * 2 + 1))
    first, last = slice_page(items, 1), slice_page(items, 3)
    assert (len(first.items), first.has_next) == (PAGE_SIZE, True)
    assert (list(last.items), last.has_next) == ([PAGE_SIZE * 2], False)
    assert [page_number(x) for x in (None, "", "0", "-4", "abc", "7")] == [1, 1, 1, 1, 1, 7]


def _tenant(quota: dict[str, QuotaSpec]) -> TenantRecord:
    return TenantRecord(id="t", display_name="t", created_at=0.0, quota=quota)


def test_quota_form_keeps_limits_and_refuses_bad_fields_together() -> None:
    t = translator("en")
    old = _tenant({"ascend": QuotaSpec(10, 4, 6)})
    form = QuotaForm({"ascend": "5", "nvidia": "", "cpu": "2"}, "", "1.5")
    parsed = parse_quota(form, old, t)
    assert parsed is not None
    assert not form.errors
    quota, cohort, weight = parsed
    assert quota == {"ascend": QuotaSpec(5, 4, 5), "cpu": QuotaSpec(2, None, None)}
    assert (cohort, weight) == (None, 1.5)
    bad = QuotaForm({"ascend": "-1", "nvidia": "1e3", "cpu": "3"}, "x", "nan")
    assert parse_quota(bad, old, t) is None
    assert set(bad.errors) == {"quota.ascend", "quota.nvidia", "weight"}


def test_session_tokens() -> None:
    sid = "random-session-id"
    assert hash_session_id(sid) != sid
    assert len(hash_session_id(sid)) == 64
    assert csrf_matches(sid, csrf_token(sid))
    assert not csrf_matches(sid, csrf_token("other"))
    assert not csrf_matches(sid, None)
