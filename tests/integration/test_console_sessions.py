"""Console sessions over HTTP on SQLite and PostgreSQL, without a browser: what the cookie
holds and what the database stores, CSRF on every write, logout, revocation and expiry
ending sessions, a hostile tenant's session, and 8 logins at once.

The browser flows are in tests/e2e/test_console_*.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.audit import AuditAction, AuditQuery
from suanwang.domain.console_sessions import SESSION_TTL_S, csrf_token, hash_session_id
from suanwang.domain.jobs import JobSpec, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.usage import ComputeUsage
from suanwang.services.audit import AuditLog
from suanwang.services.platform import Platform

FLEET = (
    "regions: [{name: r1}]\nclusters: [{name: c1, region: r1, kind: simulated, "
    "nodes: [{name: n1, chip: ascend-910b, cards: 8}]}]\n"
)
OP = Principal("op", Scope.OPERATOR, None)
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    app: Any
    platform: Platform
    keys: dict[str, str]
    key_ids: dict[str, str]


@pytest.fixture
def console(settings: Settings, clock: Any) -> Iterator[Console]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    keys, ids = {"op": platform.tenancy.bootstrap_operator_key().secret}, {}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        new = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        )
        keys[tenant], ids[tenant] = new.secret, new.record.id
    return Console(app, platform, keys, ids)


def login(console: Console, key: str) -> TestClient:
    """A client with a session (follows the login redirect)."""
    client = TestClient(console.app, base_url="http://testserver")
    form = client.get("/console/login")
    token = CSRF_INPUT.search(form.text)
    assert token is not None
    answer = client.post(
        "/console/login", data={"key": key, "csrf": token.group(1)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return client


def session_id(client: TestClient) -> str:
    return str(client.cookies.get("sw_session"))


def test_cookie_holds_a_random_id_and_the_database_only_its_hash(console: Console) -> None:
    client = TestClient(console.app)
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    answer = client.post(
        "/console/login",
        data={"key": console.keys["aaa"], "csrf": token.group(1)},
        follow_redirects=False,
    )
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert f"Max-Age={SESSION_TTL_S}" in cookie
    assert "Secure" not in cookie
    sid = session_id(client)
    assert console.keys["aaa"] not in cookie
    assert len(sid) >= 43
    with console.platform.uows() as uow:
        stored = uow.sessions.get(hash_session_id(sid))
        assert uow.sessions.get(sid) is None  # the id itself is not a row key
    assert stored is not None
    assert stored.key_id == console.key_ids["aaa"]
    assert client.get("/console/jobs").status_code == 200


def test_https_sets_the_secure_flag(console: Console) -> None:
    client = TestClient(console.app, base_url="https://testserver")
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    answer = client.post(
        "/console/login",
        data={"key": console.keys["op"], "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert "Secure" in answer.headers["set-cookie"]


def test_a_bad_key_or_a_missing_login_token_opens_no_session(console: Console) -> None:
    client = TestClient(console.app)
    token = CSRF_INPUT.search(client.get("/console/login").text)
    assert token is not None
    bad = client.post("/console/login", data={"key": "sw_nope", "csrf": token.group(1)})
    assert bad.status_code == 401
    assert "sw_session" not in client.cookies
    fresh = TestClient(console.app)  # no login cookie: the double-submit check fails
    forged = fresh.post("/console/login", data={"key": console.keys["op"], "csrf": "x"})
    assert forged.status_code == 403
    assert "sw_session" not in fresh.cookies


def test_every_write_needs_the_sessions_csrf_token(console: Console) -> None:
    client = login(console, console.keys["op"])
    sid = session_id(client)
    url = "/console/tenants/aaa/quota"
    for data, headers in (
        ({"quota.ascend": "4", "weight": "1"}, {}),
        ({"quota.ascend": "4", "weight": "1", "csrf": "0" * 64}, {}),
        ({"quota.ascend": "4", "weight": "1"}, {"X-CSRF-Token": csrf_token("another-session")}),
    ):
        refused = client.post(url, data=data, headers=headers, follow_redirects=False)
        assert refused.status_code == 403, refused.text
    assert console.platform.tenancy.tenant(OP, "aaa").quota == {}  # nothing saved
    by_form = client.post(
        url,
        data={"quota.ascend": "4", "weight": "1", "csrf": csrf_token(sid)},
        follow_redirects=False,
    )
    assert by_form.status_code == 303
    by_header = client.post(
        url,
        data={"quota.ascend": "5", "weight": "1"},
        headers={"X-CSRF-Token": csrf_token(sid)},
        follow_redirects=False,
    )
    assert by_header.status_code == 303
    assert console.platform.tenancy.tenant(OP, "aaa").quota["ascend"].nominal == 5
    assert client.post("/console/logout", follow_redirects=False).status_code == 403


def test_a_bad_quota_saves_nothing_and_says_which_field(console: Console) -> None:
    client = login(console, console.keys["op"])
    token = csrf_token(session_id(client))
    data = {"quota.ascend": "8", "quota.nvidia": "-3", "weight": "1", "csrf": token}
    answer = client.post("/console/tenants/aaa/quota", data=data)
    assert answer.status_code == 422
    assert 'data-error-for="quota.nvidia"' in answer.text
    assert 'value="-3"' in answer.text
    assert console.platform.tenancy.tenant(OP, "aaa").quota == {}
    weight = client.post(
        "/console/tenants/aaa/quota", data={"quota.ascend": "8", "weight": "0", "csrf": token}
    )
    assert weight.status_code == 422
    assert 'data-error-for="weight"' in weight.text
    assert console.platform.tenancy.tenant(OP, "aaa").quota == {}


@pytest.mark.parametrize("cards", ["²", "9" * 5000, "-1", "x", "1.5"])
def test_an_odd_card_count_in_the_job_form_is_a_422_not_a_crash(
    console: Console, cards: str
) -> None:
    client = login(console, console.keys["aaa"])
    token = csrf_token(session_id(client))
    form = {"command": "true", "chip": "cpu", "cards": cards, "csrf": token}
    answer = client.post("/console/jobs", data=form)
    assert answer.status_code == 422, answer.text[:300]
    assert 'data-error-for="cards"' in answer.text
    principal = console.platform.tenancy.authenticate(console.keys["aaa"])
    assert console.platform.jobs.list(principal, None, 10) == []


def test_logout_deletes_the_session_and_both_are_audited(console: Console) -> None:
    client = login(console, console.keys["aaa"])
    sid = session_id(client)
    answer = client.post(
        "/console/logout", headers={"X-CSRF-Token": csrf_token(sid)}, follow_redirects=False
    )
    assert answer.status_code == 303
    with console.platform.uows() as uow:
        assert uow.sessions.get(hash_session_id(sid)) is None
    client.cookies.set("sw_session", sid)  # a copied cookie is worthless now
    assert (
        client.get("/console/jobs", follow_redirects=False)
        .headers["location"]
        .endswith("/console/login")
    )
    page = AuditLog(console.platform.uows).entries(OP, AuditQuery(tenant="aaa"))
    actions = [e.action for e in page.entries]
    assert actions[:2] == [AuditAction.SESSION_LOGOUT, AuditAction.SESSION_LOGIN]
    assert all(sid not in str(e.after) for e in page.entries)


def test_revoking_the_key_or_expiry_ends_the_session(console: Console, clock: Any) -> None:
    client = login(console, console.keys["aaa"])
    assert client.get("/console/jobs").status_code == 200
    console.platform.tenancy.revoke_key(OP, console.key_ids["aaa"])
    with console.platform.uows() as uow:
        assert uow.sessions.get(hash_session_id(session_id(client))) is None
    assert client.get("/console/jobs", follow_redirects=False).status_code == 303
    later = login(console, console.keys["bbb"])
    clock.advance(SESSION_TTL_S + 1)
    assert later.get("/console/jobs", follow_redirects=False).status_code == 303


def test_hostile_tenant_session_sees_404_and_no_operator_page(console: Console) -> None:
    spec = JobSpec(
        name="a-secret",
        command=(),
        resources=Resources(chip="ascend-910b"),
        simulate_duration_s=60,
    )
    a_admin = console.platform.tenancy.authenticate(console.keys["aaa"])
    job = console.platform.jobs.submit(a_admin, spec, None).job
    b = login(console, console.keys["bbb"])
    token = csrf_token(session_id(b))
    for url in (f"/console/jobs/{job.id}", f"/console/jobs/{job.id}/log", "/console/tenants/aaa"):
        answer = b.get(url)
        assert answer.status_code == 404, url
        assert "a-secret" not in answer.text, url
    cancel = b.post(f"/console/jobs/{job.id}/cancel", headers={"X-CSRF-Token": token})
    assert cancel.status_code == 404
    assert "a-secret" not in b.get("/console/jobs?tenant=aaa").text
    assert b.get("/console/bills/aaa/2027-01.csv").status_code == 404
    quota = b.post("/console/tenants/bbb/quota", data={"weight": "1", "csrf": token})
    assert quota.status_code == 403  # a tenant admin may not set quotas, as in the API
    untouched = console.platform.jobs.get(a_admin, job.id).job
    assert untouched.state is job.state
    assert not untouched.cancel_requested


def test_eight_logins_and_page_loads_at_once(console: Console) -> None:
    def one(_: int) -> tuple[int, str]:
        client = login(console, console.keys["aaa"])
        return client.get("/console/jobs").status_code, session_id(client)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert [status for status, _ in results] == [200] * 8
    assert len({sid for _, sid in results}) == 8


def test_bill_csv_is_the_apis_bytes_for_a_non_zero_bill(console: Console, clock: Any) -> None:
    start = clock.now() - 7200
    with console.platform.uows() as uow:
        uow.usage.append(
            [ComputeUsage("c1", "aaa", "job:c1#1", "ascend-910b", 8, start, start + 3600)],
            clock.now(),
        )
        uow.commit()
    period = console.platform.billing.period(None).name
    client = login(console, console.keys["aaa"])
    page = client.get("/console/usage")
    assert page.status_code == 200
    assert 'data-testid="bill-total"' in page.text
    from_console = client.get(f"/console/bills/aaa/{period}.csv")
    from_api = TestClient(console.app).get(
        f"/api/v1/tenants/aaa/bills/{period}?format=csv",
        headers={"Authorization": f"Bearer {console.keys['aaa']}"},
    )
    assert from_api.status_code == 200
    assert from_console.content == from_api.content
    total = from_api.text.strip().splitlines()[-1].split(",")
    assert int(total[-3]) > 0  # amount_micro of the total row
    assert "attachment" in from_console.headers["content-disposition"]
