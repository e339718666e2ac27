"""Hostile tenants against datasets (issue 14), on SQLite and PostgreSQL.

Tenant B (``mallory``) attacks tenant A's (``alice``) dataset over the API: list, show,
upload, seal, delete, name it in a job, by id and by name. Every answer must be the 404 a
missing dataset gets (no existence leak). Upload paths that leave the dataset (``..``,
absolute, a symlink planted in the tree) are refused and nothing lands outside the storage
root; concurrent uploads cannot pass the storage quota together; a tenant cannot raise
its own quota. Then a sandboxed job (local backend, bubblewrap) reads its dataset at
``/data/input`` but cannot write it, and sees nothing of the storage root or of another
tenant's datasets.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.bootstrap import build_app
from suanwang.config import Settings
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: here}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 2}]}
  - {name: sim, region: here, kind: simulated, nodes: [{name: s1, chip: ascend-910b, cards: 8}]}
"""
SIM_JOB = {"name": "j", "resources": {"chip": "ascend-910b"}, "simulate": {"duration_s": 60}}


@dataclass
class World:
    client: TestClient
    platform: Platform
    settings: Settings
    alice: dict[str, str]
    mallory: dict[str, str]
    op: dict[str, str]
    ref: str
    """Alice's sealed dataset ``secret-corpus``."""


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(settings: Settings, clock: Any) -> Iterator[World]:
    app = build_app(settings, control=False, clock=clock)
    platform: Platform = app.state.platform
    platform.fleet.apply_yaml(FLEET)
    keys = {}
    for tenant in ("alice", "mallory"):
        platform.tenancy.create_tenant(tenant, tenant, {"cpu": 2, "ascend": 8})
        keys[tenant] = bearer(
            platform.tenancy.create_key(
                OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
            ).secret
        )
    op = bearer(platform.tenancy.bootstrap_operator_key().secret)
    with TestClient(app) as client:
        made = client.post(
            "/api/v1/datasets", json={"name": "secret-corpus"}, headers=keys["alice"]
        ).json()
        ref = made["id"]
        client.put(
            f"/api/v1/datasets/{ref}/files",
            params={"path": "a.txt"},
            content=b"alice's words\n",
            headers=keys["alice"],
        )
        client.post(f"/api/v1/datasets/{ref}/seal", headers=keys["alice"])
        yield World(client, platform, settings, keys["alice"], keys["mallory"], op, ref)
    platform.uows.engine.dispose()  # type: ignore[attr-defined]


def test_another_tenants_dataset_is_as_good_as_missing(world: World) -> None:
    w, m = world, world.mallory
    missing_id = "ds-000000000000"
    attempts = [
        ("GET", "/api/v1/datasets/{}", None),
        ("DELETE", "/api/v1/datasets/{}", None),
        ("POST", "/api/v1/datasets/{}/seal", None),
        ("PUT", "/api/v1/datasets/{}/files?path=evil.txt", b"overwrite"),
    ]
    for method, template, body in attempts:
        for ref in (w.ref, "secret-corpus"):
            theirs = w.client.request(method, template.format(ref), headers=m, content=body)
            nothing = w.client.request(method, template.format(missing_id), headers=m, content=body)
            assert theirs.status_code == nothing.status_code == 404, (method, ref, theirs.text)
            assert theirs.json()["title"] == nothing.json()["title"]
    assert w.client.get("/api/v1/datasets", headers=m).json() == []
    assert (
        "secret-corpus" not in w.client.get("/api/v1/datasets?name=secret-corpus", headers=m).text
    )
    job = w.client.post("/api/v1/jobs", json=SIM_JOB | {"dataset": "secret-corpus"}, headers=m)
    assert job.status_code == 404
    assert job.json()["field"] == "dataset"
    for as_id in (w.ref, missing_id):  # an id is not a name: the same 422 whether it exists
        named = w.client.post("/api/v1/jobs", json=SIM_JOB | {"dataset": as_id}, headers=m)
        assert named.status_code == 422
        assert named.json()["field"] == "dataset"
    assert w.client.get("/api/v1/tenants/alice/storage", headers=m).status_code == 404
    shown = w.client.get(f"/api/v1/datasets/{w.ref}", headers=w.alice).json()
    assert shown["manifest"][0]["path"] == "a.txt"  # still there, untouched
    assert shown["size_bytes"] == len(b"alice's words\n")


def test_upload_paths_cannot_leave_the_dataset(world: World) -> None:
    w, m = world, world.mallory
    ref = w.client.post("/api/v1/datasets", json={"name": "mine"}, headers=m).json()["id"]
    root = w.settings.storage_dir.resolve()
    outside = root.parent / "planted"
    for path in ("../../../../planted", "/tmp/planted", "..", "a/../../x", "%2e%2e/x/../../.."):
        answer = w.client.put(
            f"/api/v1/datasets/{ref}/files", params={"path": path}, content=b"x", headers=m
        )
        assert answer.status_code in (201, 422), answer.text
        if answer.status_code == 201:  # percent signs are plain characters inside the dataset
            assert answer.json()["path"].startswith("%2e%2e")
    # a symlink inside the tree (as if a bug or an operator left one): never followed
    replica = root / "here" / "tenants" / "mallory" / "datasets" / ref
    (replica / "link").symlink_to(outside.parent)
    for path in ("link/planted", "link"):
        answer = w.client.put(
            f"/api/v1/datasets/{ref}/files", params={"path": path}, content=b"x", headers=m
        )
        assert answer.status_code == 422, answer.text
    assert not outside.exists()
    assert (replica / "link").is_symlink()  # not replaced by a file written through it
    names = {p.name for p in root.rglob("*")}
    assert "planted" not in names


def test_concurrent_uploads_cannot_pass_the_quota_together(world: World) -> None:
    w, m = world, world.mallory
    assert (
        w.client.put(
            "/api/v1/tenants/mallory/storage", json={"bytes": 10**12}, headers=m
        ).status_code
        == 403
    )
    assert (
        w.client.put(
            "/api/v1/tenants/mallory/storage", json={"bytes": -1}, headers=w.op
        ).status_code
        == 422
    )
    w.client.put("/api/v1/tenants/mallory/storage", json={"bytes": 1000}, headers=w.op)
    ref = w.client.post("/api/v1/datasets", json={"name": "burst"}, headers=m).json()["id"]

    def upload(n: int) -> int:
        answer = w.client.put(
            f"/api/v1/datasets/{ref}/files", params={"path": f"f{n}"}, content=b"z" * 200, headers=m
        )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(upload, range(8)))
    assert codes == [201] * 5 + [413] * 3
    used = w.client.get("/api/v1/tenants/mallory/storage", headers=m).json()["used_bytes"]
    assert used == 1000
    second = w.client.post("/api/v1/datasets", json={"name": "more"}, headers=m).json()["id"]
    answer = w.client.put(
        f"/api/v1/datasets/{second}/files", params={"path": "x"}, content=b"1", headers=m
    )
    assert answer.status_code == 413  # a second dataset shares the same quota


SANDBOX_REFUSAL = sandbox_refusal(probe_host())
PROBE = """
import json, os
out = {"env": os.environ.get("SUANWANG_DATASET_DIR")}
out["read"] = open("/data/input/a.txt").read()
for target in ("/data/input/a.txt", "/data/input/new.txt"):
    try:
        open(target, "a").write("x")
        out[target] = "written"
    except OSError as exc:
        out[target] = exc.strerror
mounts = [l.split() for l in open("/proc/self/mountinfo")]
out["mount"] = [m[5] for m in mounts if m[4] == "/data/input"]
out["storage_visible"] = os.path.exists(STORAGE)
out["others"] = os.path.exists(OTHER)
print(json.dumps(out))
"""


@pytest.mark.skipif(SANDBOX_REFUSAL is not None, reason=str(SANDBOX_REFUSAL))
def test_a_sandboxed_job_reads_its_dataset_and_nothing_else(platform: Platform) -> None:
    platform.fleet.apply_yaml(FLEET)
    mine, theirs = [], []
    for tenant, into in (("alice", mine), ("mallory", theirs)):
        platform.tenancy.create_tenant(tenant, tenant, {"cpu": 2})
        key = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
        )
        principal = platform.tenancy.authenticate(key.secret)
        from suanwang.domain.datasets import DatasetFormat

        made = platform.datasets.create(principal, "corpus", DatasetFormat.TEXT, None)
        upload = platform.datasets.begin_file(principal, made.id, "a.txt")
        upload.write(f"{tenant}'s words\n".encode())
        platform.datasets.finish_file(principal, upload)
        sealed = platform.datasets.seal(principal, made.id)
        into.extend([principal, sealed.replicas[0].path])
    alice, alice_dir = mine
    other_dir = theirs[1]
    storage = str(Path(alice_dir).parents[4])
    script = PROBE.replace("STORAGE", repr(storage)).replace("OTHER", repr(other_dir))
    spec = JobSpec(
        name="probe",
        command=(sys.executable, "-c", script),
        resources=Resources(chip="cpu", cards_per_node=1),
        dataset="corpus",
    )
    job = platform.jobs.submit(alice, spec, None).job
    deadline = time.monotonic() + 60
    while not (detail := platform.jobs.get(alice, job.id)).job.state.terminal:
        assert time.monotonic() < deadline, detail.job.reason
        platform.control.tick()
        time.sleep(0.1)
    output = platform.jobs.logs(alice, job.id, 0, 100_000)[0].decode()
    assert detail.job.state is JobState.SUCCEEDED, output
    seen = json.loads(output.strip().splitlines()[-1])
    assert seen["env"] == "/data/input"
    assert seen["read"] == "alice's words\n"
    refusals = ("Read-only file system", "Permission denied")  # root's files, ro mount
    assert seen["/data/input/a.txt"] in refusals
    assert seen["/data/input/new.txt"] in refusals
    (options,) = seen["mount"]
    assert "ro" in options.split(","), options
    assert seen["storage_visible"] is False
    assert seen["others"] is False
    assert Path(alice_dir, "a.txt").read_text() == "alice's words\n"
    assert not Path(alice_dir, "new.txt").exists()
    assert os.stat(alice_dir).st_uid == 0


def test_another_tenants_transfers_are_out_of_reach(world: World) -> None:
    w, m = world, world.mallory
    for ref in (w.ref, "secret-corpus", "ds-000000000000"):
        copied = w.client.post(f"/api/v1/datasets/{ref}/copy", json={"region": "here"}, headers=m)
        assert copied.status_code == 404, copied.text
        listed = w.client.get(f"/api/v1/datasets/{ref}/transfers", headers=m)
        assert listed.status_code == 404
    from suanwang.domain.transfers import TransferRecord, TransferState

    with w.platform.uows() as uow:
        uow.datasets.add_transfer(
            TransferRecord(
                "tr-00000000abcd", w.ref, "here", "there", TransferState.FAILED, 1, 0, 0.0,
                None, "", 0, 0.0,
            )
        )  # fmt: skip
        uow.commit()
    theirs = w.client.get("/api/v1/transfers/tr-00000000abcd", headers=m)
    nothing = w.client.get("/api/v1/transfers/tr-000000000000", headers=m)
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["title"] == nothing.json()["title"]
    assert w.client.get("/api/v1/transfers/tr-00000000abcd", headers=w.alice).status_code == 200
    body = {"name": "rogue", "region": "here", "address": "127.0.0.1:9"}
    assert w.client.post("/api/v1/agents", json=body, headers=m).status_code == 403
    assert w.client.get("/api/v1/agents", headers=m).status_code == 403
