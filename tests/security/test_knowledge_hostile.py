"""Hostile tenants and hostile files against knowledge bases (issue 15, point 1).

Tenant B must not list, show, retrieve from, upload into, delete or learn of tenant A's
knowledge bases (404 exactly like a missing one). Bad files (unsupported, corrupt, a zip
bomb, empty, 100 MB) get a clear 4xx and leave nothing half-indexed. Eight uploads and
eight retrievals at once all succeed. Keyword-only bases: no gateway is needed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docx
import pytest
from fastapi.testclient import TestClient

from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

KB = "/api/v1/knowledge-bases"
FACT = "The Lotus reservoir holds 4.2 million cubic metres. 莲花水库蓄水量为420万立方米。"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = tmp_path_factory.mktemp("kb")
    settings = Settings(data_dir=data / "data", database_url=f"sqlite:///{data}/s.db")
    app = build_app(settings, control=False)
    platform = app.state.platform
    op = Principal("op", Scope.OPERATOR, None)
    keys: dict[str, str] = {}
    for tenant in ("aaa", "bbb"):
        platform.tenancy.create_tenant(tenant, tenant, {})
        for scope in (Scope.TENANT_ADMIN, Scope.READ_ONLY):
            key = platform.tenancy.create_key(
                op, tenant=tenant, scope=scope, name="", expires_in_s=None
            )
            keys[f"{tenant[0]}_{scope.value}"] = key.secret
    with TestClient(app) as client:
        yield client, keys
    platform.uows.engine.dispose()


def auth(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}"}


def make_kb(client: TestClient, keys: dict[str, str], name: str) -> str:
    answer = client.post(KB, json={"name": name}, headers=auth(keys, "a_tenant-admin"))
    assert answer.status_code == 201, answer.text
    kb_id: str = answer.json()["id"]
    return kb_id


def upload(client: TestClient, headers: dict[str, str], kb: str, name: str, data: bytes) -> Any:
    return client.post(f"{KB}/{kb}/documents", headers=headers, files={"file": (name, data)})


def test_other_tenant_cannot_see_or_touch(world: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = world
    kb = make_kb(client, keys, "private-a")
    a = auth(keys, "a_tenant-admin")
    assert upload(client, a, kb, "fact.txt", FACT.encode()).status_code == 201
    missing = "kb_0000000000000000"
    for who in ("b_tenant-admin", "b_read-only"):
        b = auth(keys, who)
        assert kb not in client.get(KB, headers=b).text
        for target in (kb, missing):
            answers = [
                client.get(f"{KB}/{target}", headers=b),
                client.get(f"{KB}/{target}/documents", headers=b),
                client.post(f"{KB}/{target}/retrieve", headers=b, json={"query": "Lotus"}),
                upload(client, b, target, "x.txt", b"planted by b"),
                client.delete(f"{KB}/{target}", headers=b),
            ]
            statuses = {r.status_code for r in answers}
            assert statuses <= {404, 403}, [r.text for r in answers]
            details = {
                r.json()["detail"].replace(target, "ID") for r in answers if r.status_code == 404
            }
            assert len(details) == 1  # the same words for theirs and missing
    hits = client.post(f"{KB}/{kb}/retrieve", headers=a, json={"query": "Lotus reservoir"})
    assert hits.json()["hits"][0]["document"] == "fact.txt"
    assert "planted" not in hits.text
    assert client.get(f"{KB}/{kb}", headers=auth(keys, "a_read-only")).status_code == 200


def bomb() -> bytes:
    document = docx.Document()
    document.add_paragraph("x")
    plain = io.BytesIO()
    document.save(plain)
    source = zipfile.ZipFile(io.BytesIO(plain.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "word/document.xml":
                data = data.replace(
                    b"</w:body>",
                    b"<w:p><w:r><w:t>" + b"A" * (300 << 20) + b"</w:t></w:r></w:p></w:body>",
                )
            archive.writestr(info.filename, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("tool.exe", b"MZ\x90\x00", 422),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Length 99999 >> stream\ngarbage", 422),
        ("broken.docx", b"PK\x03\x04 not really a zip", 422),
        ("bomb.docx", "BOMB", 422),
        ("empty.txt", b"", 422),
        ("blank.md", b"   \n\n  ", 422),
        ("binary.txt", bytes(range(256)) * 4, 422),
        ("huge.txt", "HUGE", 413),
    ],
)
def test_bad_files_fail_alone(
    world: tuple[TestClient, dict[str, str]], name: str, data: Any, status: int
) -> None:
    client, keys = world
    a = auth(keys, "a_tenant-admin")
    kb = make_kb(client, keys, f"bad-{name.replace('.', '-')}")
    assert upload(client, a, kb, "good.txt", FACT.encode()).status_code == 201
    before = client.get(f"{KB}/{kb}/documents", headers=a).json()
    body = bomb() if data == "BOMB" else b"A" * (100 << 20) if data == "HUGE" else data
    answer = upload(client, a, kb, name, body)
    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert problem["status"] == status
    assert problem["detail"]
    assert problem.get("hint")
    assert client.get(f"{KB}/{kb}/documents", headers=a).json() == before
    # a failed re-upload of an existing name keeps the old chunks
    assert upload(client, a, kb, "good.txt", b"").status_code == 422
    hits = client.post(f"{KB}/{kb}/retrieve", headers=a, json={"query": "Lotus"}).json()["hits"]
    assert [h["document"] for h in hits] == ["good.txt"]


def test_eight_uploads_and_retrievals_at_once(world: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = world
    a = auth(keys, "a_tenant-admin")
    kb = make_kb(client, keys, "concurrent")

    def put(i: int) -> int:
        text = f"Station {i} records rainfall code R{i}x{i}. 站点{i}的编号是R{i}x{i}。"
        return int(upload(client, a, kb, f"s{i}.md", text.encode()).status_code)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(put, range(8))) == [201] * 8

    def ask(i: int) -> str:
        body = {"query": f"rainfall code R{i}x{i}", "top_k": 1, "mode": "keyword"}
        hits = client.post(f"{KB}/{kb}/retrieve", headers=a, json=body).json()["hits"]
        return str(hits[0]["document"])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == [f"s{i}.md" for i in range(8)]


def test_reupload_replaces_and_delete_removes(world: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = world
    a = auth(keys, "a_tenant-admin")
    kb = make_kb(client, keys, "replace")
    first = upload(client, a, kb, "note.html", b"<p>old fact: zebra</p>").json()
    second = upload(client, a, kb, "note.html", b"<p>new fact: giraffe</p>").json()
    assert second["created_at"] == first["created_at"]
    docs = client.get(f"{KB}/{kb}/documents", headers=a).json()
    assert [d["id"] for d in docs] == [second["id"]]
    ask = lambda q: client.post(f"{KB}/{kb}/retrieve", headers=a, json={"query": q}).json()["hits"]  # noqa: E731
    assert ask("zebra") == []
    assert ask("giraffe")[0]["document"] == "note.html"
    assert client.delete(f"{KB}/{kb}/documents/{second['id']}", headers=a).status_code == 200
    assert ask("giraffe") == []
    assert client.delete(f"{KB}/{kb}", headers=a).status_code == 200
    assert client.get(f"{KB}/{kb}", headers=a).status_code == 404


def test_vector_mode_without_embeddings_is_422(world: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = world
    a = auth(keys, "a_tenant-admin")
    kb = make_kb(client, keys, "novec")
    answer = client.post(f"{KB}/{kb}/retrieve", headers=a, json={"query": "x", "mode": "vector"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "mode"


def test_files_are_parsed_in_the_sandbox(
    world: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, _ = world
    parser = client.app.state.platform.knowledge._parser  # type: ignore[attr-defined]
    if not parser.sandboxed:
        pytest.skip("this host cannot sandbox (not root or no bubblewrap)")
    from suanwang.domain.knowledge import MediaType

    argv = parser.argv(MediaType.TEXT)
    assert argv[0].endswith("bwrap")
    assert "--unshare-net" in argv
    assert "--as=" in " ".join(argv)
