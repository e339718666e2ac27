"""``/api/v1/apps`` over HTTP (issue 15, point 2): versions, publishing, sharing, deleting
with knowledge bases, and bad input answered 422 naming the field. Keyword-only bases: no
gateway is needed (the live tests in test_apps_live.py call apps through the gateway)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

APPS, KB = "/api/v1/apps", "/api/v1/knowledge-bases"
CHAT = "smollm2-135m-instruct"


@dataclass
class World:
    client: TestClient
    platform: Platform
    keys: dict[str, str]
    key_ids: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def kb(self, who: str, name: str) -> str:
        answer = self.client.post(KB, json={"name": name}, headers=self.h(who))
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def app(self, who: str, app_name: str, **fields: Any) -> Any:
        body = {"name": app_name, "model": CHAT, "system_prompt": "Be brief."} | fields
        return self.client.post(APPS, json=body, headers=self.h(who))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("apps")
    settings = Settings(data_dir=data / "data", database_url=f"sqlite:///{data}/s.db")
    app = build_app(settings, control=False)
    platform: Platform = app.state.platform
    op = Principal("op", Scope.OPERATOR, None)
    keys, ids = {}, {}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        for scope in (Scope.TENANT_ADMIN, Scope.TENANT_MEMBER):
            made = platform.tenancy.create_key(
                op, tenant=tenant, scope=scope, name="", expires_in_s=None
            )
            keys[f"{tenant[0]}_{scope.value}"] = made.secret
            ids[f"{tenant[0]}_{scope.value}"] = made.record.id
    with TestClient(app) as client:
        yield World(client, platform, keys, ids)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def test_versions_publish_and_rollback(world: World) -> None:
    kb = world.kb("a_tenant-admin", "versions-kb")
    created = world.app("a_tenant-admin", "tutor", knowledge_bases=["versions-kb"], top_k=2)
    assert created.status_code == 201, created.text
    assert created.json()["call_as"] == "app:tutor"
    assert created.json()["version"]["knowledge_bases"] == [kb]  # a name is stored as the id
    a = world.h("a_tenant-admin")
    v2 = world.client.patch(f"{APPS}/tutor", json={"system_prompt": "Be kind."}, headers=a)
    assert v2.status_code == 200, v2.text
    assert (v2.json()["published_version"], v2.json()["version"]["top_k"]) == (2, 2)
    draft = world.client.patch(f"{APPS}/tutor", json={"top_k": 5, "publish": False}, headers=a)
    assert (draft.json()["published_version"], draft.json()["latest_version"]) == (2, 3)
    versions = world.client.get(f"{APPS}/tutor/versions", headers=world.h("a_tenant-member"))
    prompts = [v["system_prompt"] for v in versions.json()]
    assert prompts == ["Be brief.", "Be kind.", "Be kind."]
    back = world.client.post(f"{APPS}/tutor/publish", json={"version": 1}, headers=a)
    assert back.json()["published_version"] == 1
    shown = world.client.get(f"{APPS}/tutor", headers=a).json()
    assert shown["version"]["system_prompt"] == "Be brief."
    assert world.client.get(f"{APPS}/tutor?version=3", headers=a).json()["version"]["top_k"] == 5
    missing = world.client.post(f"{APPS}/tutor/publish", json={"version": 9}, headers=a)
    assert missing.status_code == 404


def test_sharing_names_keys_of_the_tenant(world: World) -> None:
    assert world.app("a_tenant-admin", "shared").status_code == 201
    a = world.h("a_tenant-admin")
    mine = world.key_ids["a_tenant-member"]
    shared = world.client.put(f"{APPS}/shared/sharing", json={"key_ids": [mine]}, headers=a)
    assert shared.json()["shared_keys"] == [mine]
    theirs = world.key_ids["b_tenant-member"]
    refused = world.client.put(f"{APPS}/shared/sharing", json={"key_ids": [theirs]}, headers=a)
    assert refused.status_code == 422
    assert refused.json()["field"] == "key_ids"
    gone = world.client.put(f"{APPS}/shared/sharing", json={"key_ids": ["nope"]}, headers=a)
    assert gone.json()["detail"].replace("'nope'", "X") == refused.json()["detail"].replace(
        repr(theirs), "X"
    )
    a_key = world.platform.tenancy.authenticate(world.keys["a_tenant-admin"])
    assert world.platform.apps.resolve(a_key, "shared", None) is None  # not shared with it
    member = world.platform.tenancy.authenticate(world.keys["a_tenant-member"])
    assert world.platform.apps.resolve(member, "shared", None) is not None


def test_delete_with_its_knowledge_bases(world: World) -> None:
    world.kb("a_tenant-admin", "kept-kb")
    world.kb("a_tenant-admin", "own-kb")
    assert world.app("a_tenant-admin", "user", knowledge_bases=["kept-kb"]).status_code == 201
    made = world.app("a_tenant-admin", "doomed", knowledge_bases=["kept-kb", "own-kb"])
    assert made.status_code == 201, made.text
    a = world.h("a_tenant-admin")
    gone = world.client.delete(f"{APPS}/doomed?with_knowledge_bases=true", headers=a)
    assert gone.status_code == 200, gone.text
    assert [k["name"] for k in gone.json()["deleted_knowledge_bases"]] == ["own-kb"]
    names = {k["name"] for k in world.client.get(KB, headers=a).json()}
    assert "kept-kb" in names  # another app uses it
    assert "own-kb" not in names
    assert world.client.get(f"{APPS}/doomed", headers=a).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"model": "all-minilm-l6-v2"}, "model"),  # an embedding model
        ({"name": "Bad Name"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"system_prompt": ""}, "system_prompt"),
        ({"system_prompt": "   "}, "system_prompt"),
        ({"knowledge_bases": ["b-private"]}, "knowledge_bases"),
        ({"knowledge_bases": ["no-such-kb"]}, "knowledge_bases"),
        ({"top_k": 0}, "top_k"),
        ({"temperature": 3}, "temperature"),
        ({"retrieval_mode": "psychic"}, "retrieval_mode"),
        ({"key_ids": ["x"]}, "key_ids"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    world: World, fields: dict[str, Any], field: str
) -> None:
    world.client.post(KB, json={"name": "b-private"}, headers=world.h("b_tenant-admin"))
    answer = world.app("a_tenant-admin", "bad-input", **fields)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.json()
    assert (
        world.client.get(f"{APPS}/bad-input", headers=world.h("a_tenant-admin")).status_code == 404
    )


def test_another_tenants_kb_by_id_reads_like_a_missing_one(world: World) -> None:
    theirs = world.kb("b_tenant-admin", "b-secret")
    refused = world.app("a_tenant-admin", "thief", knowledge_bases=[theirs]).json()
    missing = world.app("a_tenant-admin", "thief", knowledge_bases=["kb_0000000000000000"]).json()
    assert refused["detail"].replace(theirs, "X") == missing["detail"].replace(
        "kb_0000000000000000", "X"
    )


def test_operator_and_member_keys(world: World) -> None:
    member = world.app("a_tenant-member", "by-member")
    assert member.status_code == 403
    ok = world.app("a_tenant-admin", "listed")
    assert ok.status_code == 201
    names = [a["name"] for a in world.client.get(APPS, headers=world.h("b_tenant-admin")).json()]
    assert "listed" not in names
