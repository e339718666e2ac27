"""Hostile tenants against apps (issue 15, point 4).

Tenant B must not list, show, version, update, publish, share, delete or learn of tenant
A's apps (404 with the same words as a missing one), must not attach A's knowledge bases
to its own app (422 with the same words as a missing base, by id or by name), must not
share its app with A's keys, and the gateway's lookup gives B nothing of A's. Hostile
names never reach the database as anything but a missing app. Keyword-only bases: no
gateway is needed (the gateway's 404 is in tests/integration/test_apps_live.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

APPS, KB = "/api/v1/apps", "/api/v1/knowledge-bases"
CHAT = "smollm2-135m-instruct"
World = tuple[TestClient, Platform, dict[str, str], dict[str, str]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("apps-hostile")
    settings = Settings(data_dir=data / "data", database_url=f"sqlite:///{data}/s.db")
    app = build_app(settings, control=False)
    platform: Platform = app.state.platform
    op = Principal("op", Scope.OPERATOR, None)
    keys: dict[str, str] = {}
    ids: dict[str, str] = {}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        for scope in (Scope.TENANT_ADMIN, Scope.READ_ONLY):
            key = platform.tenancy.create_key(
                op, tenant=tenant, scope=scope, name="", expires_in_s=None
            )
            keys[f"{tenant[0]}_{scope.value}"] = key.secret
            ids[f"{tenant[0]}_{scope.value}"] = key.record.id
    a = {"Authorization": f"Bearer {keys['a_tenant-admin']}"}
    with TestClient(app) as client:
        kb = client.post(KB, json={"name": "a-secret"}, headers=a)
        assert kb.status_code == 201
        body = {"name": "private", "model": CHAT, "system_prompt": "A's secret prompt.",
                "knowledge_bases": ["a-secret"]}  # fmt: skip
        assert client.post(APPS, json=body, headers=a).status_code == 201
        yield client, platform, keys, ids
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def auth(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}"}


def attempts(client: TestClient, headers: dict[str, str], name: str) -> list[Any]:
    return [
        client.get(f"{APPS}/{name}", headers=headers),
        client.get(f"{APPS}/{name}?version=1", headers=headers),
        client.get(f"{APPS}/{name}/versions", headers=headers),
        client.patch(f"{APPS}/{name}", json={"system_prompt": "pwned"}, headers=headers),
        client.post(f"{APPS}/{name}/publish", json={"version": 1}, headers=headers),
        client.put(f"{APPS}/{name}/sharing", json={"key_ids": []}, headers=headers),
        client.delete(f"{APPS}/{name}?with_knowledge_bases=true", headers=headers),
    ]


def test_other_tenant_cannot_see_or_touch_an_app(world: World) -> None:
    client, _, keys, _ = world
    for who in ("b_tenant-admin", "b_read-only"):
        b = auth(keys, who)
        assert "private" not in client.get(APPS, headers=b).text
        seen: dict[str, list[Any]] = {
            target: attempts(client, b, target) for target in ("private", "no-such-app")
        }
        for i, (theirs, missing) in enumerate(zip(*seen.values(), strict=True)):
            assert theirs.status_code == missing.status_code, i
            assert theirs.status_code in (403, 404), theirs.text
            if theirs.status_code == 404:
                words = theirs.json()["detail"].replace("private", "X")
                assert words == missing.json()["detail"].replace("no-such-app", "X")
            assert "secret prompt" not in theirs.text
    a = auth(keys, "a_tenant-admin")
    shown = client.get(f"{APPS}/private", headers=a).json()
    assert shown["version"]["system_prompt"] == "A's secret prompt."
    assert shown["latest_version"] == 1  # nothing of B's reached it
    assert [k["name"] for k in shown["bases"]] == ["a-secret"]


@pytest.mark.parametrize("how", ["name", "id"])
def test_other_tenant_cannot_attach_a_knowledge_base(world: World, how: str) -> None:
    client, _, keys, _ = world
    a = auth(keys, "a_tenant-admin")
    kb = next(k for k in client.get(KB, headers=a).json() if k["name"] == "a-secret")
    ref = kb["name"] if how == "name" else kb["id"]
    missing = "kb_0000000000000000" if how == "id" else "no-such-kb"
    b = auth(keys, "b_tenant-admin")
    answers = []
    for target in (ref, missing):
        body = {"name": f"thief-{how}", "model": CHAT, "system_prompt": "x",
                "knowledge_bases": [target]}  # fmt: skip
        answers.append(client.post(APPS, json=body, headers=b))
    assert [r.status_code for r in answers] == [422, 422]
    assert {r.json()["field"] for r in answers} == {"knowledge_bases"}
    assert answers[0].json()["detail"].replace(ref, "X") == answers[1].json()["detail"].replace(
        missing, "X"
    )
    # B's own app cannot be updated onto A's base either
    own = {"name": f"own-{how}", "model": CHAT, "system_prompt": "x"}
    assert client.post(APPS, json=own, headers=b).status_code == 201
    patched = client.patch(f"{APPS}/own-{how}", json={"knowledge_bases": [ref]}, headers=b)
    assert patched.status_code == 422


def test_other_tenant_cannot_share_with_foreign_keys_or_resolve(world: World) -> None:
    client, platform, keys, ids = world
    b = auth(keys, "b_tenant-admin")
    body = {"name": "b-app", "model": CHAT, "system_prompt": "x",
            "key_ids": [ids["a_tenant-admin"]]}  # fmt: skip
    assert client.post(APPS, json=body, headers=b).status_code == 422
    body.pop("key_ids")
    assert client.post(APPS, json=body, headers=b).status_code == 201
    shared = {"key_ids": [ids["a_read-only"]]}
    assert client.put(f"{APPS}/b-app/sharing", json=shared, headers=b).status_code == 422
    b_key = platform.tenancy.authenticate(keys["b_tenant-admin"])
    a_key = platform.tenancy.authenticate(keys["a_tenant-admin"])
    assert platform.apps.resolve(b_key, "private", None) is None
    assert platform.apps.resolve(b_key, "private", 1) is None
    assert platform.apps.resolve(a_key, "b-app", None) is None
    assert platform.apps.resolve(a_key, "private", None) is not None


@pytest.mark.parametrize(
    "name",
    ["..", "%2e%2e", "private%00", "PRIVATE", "private'--", "a" * 64, "x" * 300, "私有"],
)
def test_hostile_names_are_missing_apps(world: World, name: str) -> None:
    client, _, keys, _ = world
    answer = client.get(f"{APPS}/{name}", headers=auth(keys, "b_tenant-admin"))
    assert answer.status_code in (404, 422), answer.text
    assert "secret" not in answer.text


def test_eight_tenants_apps_at_once_stay_apart(world: World) -> None:
    client, _, keys, _ = world

    def create(i: int) -> int:
        who = "a_tenant-admin" if i % 2 else "b_tenant-admin"
        body = {"name": "same-name", "model": CHAT, "system_prompt": f"prompt {who}"}
        return int(client.post(APPS, json=body, headers=auth(keys, who)).status_code)

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(create, range(8)))
    assert statuses.count(201) == 2  # one per tenant; the others are 409
    assert set(statuses) == {201, 409}
    for who in ("a_tenant-admin", "b_tenant-admin"):
        shown = client.get(f"{APPS}/same-name", headers=auth(keys, who)).json()
        assert shown["version"]["system_prompt"] == f"prompt {who}"
