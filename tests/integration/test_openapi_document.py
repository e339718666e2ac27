"""The OpenAPI document says what the API answers (the fast half of suite R4).

Schemathesis (``tests/security/test_openapi_fuzz.py``) searches for answers the document
does not promise; these tests pin the mechanism that keeps the two together and the
mismatches it once found, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.adapters.http.authz import PUBLIC, ROUTES
from suanwang.adapters.http.problems import PROBLEM
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import MAX_QUOTA_CARDS, Principal, Scope
from suanwang.services.platform import Platform


@pytest.fixture
def api(settings: Settings, clock: Any) -> Iterator[tuple[TestClient, Platform, dict[str, str]]]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    operator = {"Authorization": f"Bearer {platform.tenancy.bootstrap_operator_key().secret}"}
    with TestClient(app) as client:
        yield client, platform, operator
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_route_documents_its_errors_as_problems(api: Any) -> None:
    client, _, _ = api
    document = client.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    seen = set()
    for method, path, operation in operations(document):
        seen.add((method, path))
        responses = operation["responses"]
        public = ROUTES[(method, path)] == PUBLIC
        assert operation["security"] == ([] if public else [{"bearer": []}]), (method, path)
        assert ("401" in responses) is not public, (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in responses, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == [PROBLEM], (method, path, status)
    assert seen == set(ROUTES), "the document and the authorization table list other routes"


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/metrics", "text/plain"),
        ("/api/v1/jobs/{job_id}/logs", "text/plain"),
        ("/api/v1/usage", "text/csv"),
        ("/api/v1/tenants/{name}/bills/{period}", "text/csv"),
    ],
)
def test_answers_that_are_not_json_are_documented(api: Any, path: str, media_type: str) -> None:
    client, _, _ = api
    document = client.get("/openapi.json").json()
    assert media_type in document["paths"][path]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/healthz", "GET"),
        ("PATCH", "/api/v1/tenants", "GET, POST"),
        ("OPTIONS", "/api/v1/keys/key-123", "DELETE"),
        ("PUT", "/api/v1/jobs/job-1/cancel", "POST"),
    ],
)
def test_405_lists_every_method_of_the_path(api: Any, method: str, path: str, allowed: str) -> None:
    client, _, _ = api
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == allowed


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "acme", "weight": "2"}, "weight"),  # a string is not a number
        ({"name": "acme", "weight": True}, "weight"),  # nor is a boolean
        ({"name": "acme\n"}, "name"),
        ({"name": "acme", "quota": {"ascend": MAX_QUOTA_CARDS + 1}}, "quota"),
        ({"name": "acme", "cohort": "Bad Cohort"}, "cohort"),
    ],
)
def test_tenant_bodies_are_checked_as_documented(
    api: Any, body: dict[str, Any], field: str
) -> None:
    client, _, operator = api
    response = client.post("/api/v1/tenants", json=body, headers=operator)
    assert response.status_code == 422, response.text
    assert response.json()["field"].startswith(field)


def test_a_revoked_key_has_no_limits(api: Any) -> None:
    client, platform, operator = api
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="acme",
        scope=Scope.TENANT_MEMBER,
        name="",
        expires_in_s=None,
    )
    url = f"/api/v1/keys/{key.record.id}/limits"
    assert client.get(url, headers=operator).status_code == 200
    assert client.delete(f"/api/v1/keys/{key.record.id}", headers=operator).status_code == 200
    assert client.get(url, headers=operator).status_code == 404
    assert client.put(url, json={"rpm": 1}, headers=operator).status_code == 404


def test_an_unreadable_body_is_a_documented_400(api: Any) -> None:
    client, _, operator = api
    response = client.post(
        "/api/v1/tenants",
        content=b"\xff\xfe{",
        headers={**operator, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    document = client.get("/openapi.json").json()
    assert "400" in document["paths"]["/api/v1/tenants"]["post"]["responses"]


def test_an_empty_period_is_refused_like_any_other_that_breaks_the_pattern(api: Any) -> None:
    client, _, operator = api
    response = client.get("/api/v1/usage", params={"period": ""}, headers=operator)
    assert response.status_code == 422
    assert response.json()["field"] == "period"
    assert client.get("/api/v1/usage", headers=operator).status_code == 200


def test_an_audit_cursor_past_every_id_is_the_first_page(api: Any) -> None:
    client, _, operator = api  # the cursor's documented pattern allows 18 digits
    newest = client.get("/api/v1/audit", headers=operator)
    past = client.get("/api/v1/audit", params={"cursor": "3000000000"}, headers=operator)
    assert past.status_code == 200, past.text  # was a 500 on PostgreSQL (int4 column)
    assert past.json()["entries"] == newest.json()["entries"]
