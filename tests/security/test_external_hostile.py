"""A hostile tenant against external endpoints (issue 10, point 5; suites R5 and R8).

Tenants cannot register, see, change or remove an external endpoint, nor smuggle an upstream
URL through the deployments API; a tenant sees its own external deployment without its
address or credential; and even the operator cannot point the platform at loopback,
link-local (cloud metadata) or private addresses without the explicit exemption, which the
audit log records. SQLite and PostgreSQL (tests/conftest.py's ``settings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.external import ExternalSpec

URL = "https://93.184.216.34/v1"
CREDENTIAL = "sk-hostile-test-credential-0123456789"
FLEET = "regions: [{name: r1}]\nclusters: [{name: sim, region: r1, kind: simulated, nodes: [{name: n1, chip: ascend-910b, cards: 8}]}]\n"
SSRF_URLS = [
    "http://127.0.0.1:8000/v1",
    "http://localhost:8000/v1",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/v1",
    "http://[::ffff:127.0.0.1]:8000/v1",
    "http://0.0.0.0:8000/v1",
    "http://10.0.0.1/v1",
    "http://2130706433/v1",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
]


class Api:
    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client, self.keys = client, keys

    def __call__(self, who: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return self.client.request(method, path, headers=headers, json=body)


@pytest.fixture
def api(settings: Settings, clock: Any) -> Iterator[tuple[Api, dict[str, str]]]:
    app = build_app(settings, control=False, clock=clock)
    platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    op = Principal("op", Scope.OPERATOR, None)
    keys = {"op": platform.tenancy.bootstrap_operator_key().secret}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        keys[f"{tenant[0]}_admin"] = platform.tenancy.create_key(
            op, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        ).secret
    ids = {
        "public": platform.externals.register(
            op, ExternalSpec("partner-public", URL, credential=CREDENTIAL)
        ).deployment.id,
        "a_private": platform.externals.register(
            op, ExternalSpec("partner-a", URL, credential=CREDENTIAL, tenant="aaa")
        ).deployment.id,
    }
    with TestClient(app) as client:
        yield Api(client, keys), ids
    platform.uows.engine.dispose()


@pytest.mark.parametrize("who", ["a_admin", "b_admin"])
def test_tenants_cannot_register_see_change_or_remove(
    api: tuple[Api, dict[str, str]], who: str
) -> None:
    call, ids = api
    for url in [URL, *SSRF_URLS]:
        body = {"model": "evil", "base_url": url, "allow_private_network": True}
        assert call(who, "POST", "/api/v1/external-endpoints", body).status_code == 403
    assert call(who, "GET", "/api/v1/external-endpoints").status_code == 403
    for dep in ids.values():
        path = f"/api/v1/external-endpoints/{dep}"
        assert call(who, "GET", path).status_code == 403
        patch = {"base_url": "http://169.254.169.254/", "allow_private_network": True}
        assert call(who, "PATCH", path, patch).status_code == 403
        assert call(who, "DELETE", path).status_code == 403
    listed = call("op", "GET", "/api/v1/external-endpoints").json()
    assert {e["base_url"] for e in listed} == {URL}  # nothing changed


def test_no_upstream_url_through_the_deployments_api(api: tuple[Api, dict[str, str]]) -> None:
    call, ids = api
    smuggled = [
        {"model": "qwen2.5-72b-instruct", "cluster": "sim", "engine": "openai-compatible"},
        {"model": "qwen2.5-72b-instruct", "cluster": "sim", "base_url": "http://127.0.0.1:1"},
        {"model": "partner-a", "cluster": "external"},
    ]
    for body in smuggled:
        response = call("a_admin", "POST", "/api/v1/deployments", body)
        assert response.status_code in (404, 422), (body, response.text)
    mine = f"/api/v1/deployments/{ids['a_private']}"
    assert call("a_admin", "PUT", f"{mine}/replicas", {"replicas": 5}).status_code == 409
    assert call("a_admin", "DELETE", mine).status_code == 409
    assert call("b_admin", "DELETE", mine).status_code == 404
    public = f"/api/v1/deployments/{ids['public']}"
    assert call("b_admin", "DELETE", public).status_code == 403


def test_tenants_see_their_external_deployment_without_address_or_credential(
    api: tuple[Api, dict[str, str]],
) -> None:
    call, ids = api
    seen_a = call("a_admin", "GET", "/api/v1/deployments")
    seen_b = call("b_admin", "GET", "/api/v1/deployments")
    assert {d["id"] for d in seen_a.json()} >= set(ids.values())
    assert ids["a_private"] not in seen_b.text
    assert ids["public"] in seen_b.text
    one = call("a_admin", "GET", f"/api/v1/deployments/{ids['a_private']}")
    for response in (seen_a, seen_b, one):
        assert "93.184.216.34" not in response.text
        assert CREDENTIAL not in response.text
    assert call("b_admin", "GET", f"/api/v1/deployments/{ids['a_private']}").status_code == 404


def test_operator_needs_the_exemption_for_private_addresses(
    api: tuple[Api, dict[str, str]],
) -> None:
    call, _ = api
    for url in SSRF_URLS:
        body = {"model": "m", "base_url": url, "credential": CREDENTIAL}
        refused = call("op", "POST", "/api/v1/external-endpoints", body)
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["field"] == "base_url"
        assert CREDENTIAL not in refused.text
    body = {"model": "m", "base_url": "http://127.0.0.1:8000/v1", "allow_private_network": True}
    created = call("op", "POST", "/api/v1/external-endpoints", body)
    assert created.status_code == 201
    assert created.json()["allow_private_network"] is True
    audit = call("op", "GET", "/api/v1/audit").text
    assert '"allow_private_network":true' in audit.replace(" ", "")
    assert CREDENTIAL not in audit
    assert "has_credential" in audit
    for url in ("http://169.254.169.254/", "https://93.184.216.35@127.0.0.1/"):
        patch = {"base_url": url}
        path = f"/api/v1/external-endpoints/{created.json()['id']}"
        moved = call("op", "PATCH", path, patch | {"allow_private_network": False})
        assert moved.status_code == 422
