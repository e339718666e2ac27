"""A hostile dataset job for the live Slurm and Ray tests (issue 14, datasets on every backend).

:func:`probe_command` is a ``sh`` script (only coreutils: no Python needed inside the
sandbox) that prints ``key=value`` lines: ``$SUANWANG_DATASET_DIR``, the SHA-256 of a file
it reads from ``/data/input``, the options of that mount, whether appending to a file or
creating one there worked, and, for each named target (another tenant's replica by its
absolute host path, the control plane's data directory and key, the storage root), whether
it could be read or listed. :func:`verdict` parses them; :func:`check` asserts the lot.
:func:`upload` makes a sealed dataset through the API; :func:`second_tenant` adds tenant
``umbrella`` (the hostile one) before the server starts.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from typing import Protocol

import httpx

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

SCRIPT = """
echo "uid=$(id -u)"
echo "env=${SUANWANG_DATASET_DIR:-}"
echo "sha=$(sha256sum /data/input/a.txt | cut -d' ' -f1)"
echo "mount=$(awk '$5 == "/data/input" {print $6}' /proc/self/mountinfo)"
if echo x >> /data/input/a.txt 2>/dev/null; then echo append=written; else echo append=refused; fi
if touch /data/input/new.txt 2>/dev/null; then echo create=written; else echo create=refused; fi
"""
TARGET = """
if cat {path} >/dev/null 2>&1 || ls {path} >/dev/null 2>&1; then echo "{name}=reached"
else echo "{name}=refused"; fi
"""


class Api(Protocol):
    def client(self, key: str | None = None) -> httpx.Client: ...


def probe_command(targets: Mapping[str, str]) -> list[str]:
    """The job's argv: the probe, then one line per target (``name=reached|refused``)."""
    lines = [SCRIPT]
    for name, path in targets.items():
        lines.append(TARGET.format(name=name, path=shlex.quote(path)))
    return ["sh", "-c", "".join(lines)]


def verdict(output: str) -> dict[str, str]:
    """The ``key=value`` lines of a probe's output."""
    found = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            found[key] = value
    return found


def check(seen: Mapping[str, str], content: bytes, targets: Mapping[str, str]) -> None:
    """What a dataset job must see: its file whole, read-only; no target reached."""
    assert seen.get("env") == "/data/input", seen
    assert seen.get("sha") == hashlib.sha256(content).hexdigest(), seen
    assert "ro" in seen.get("mount", "").split(","), seen
    assert seen.get("append") == "refused", seen
    assert seen.get("create") == "refused", seen
    for name in targets:
        assert seen.get(name) == "refused", (name, targets[name], seen)


def upload(api: Api, key: str, name: str, content: bytes) -> str:
    """A sealed dataset ``name`` with one file ``a.txt``; its id."""
    with api.client(key) as client:
        made = client.post("/api/v1/datasets", json={"name": name, "format": "text"})
        assert made.status_code == 201, made.text
        ref = str(made.json()["id"])
        put = client.put(f"/api/v1/datasets/{ref}/files", params={"path": "a.txt"}, content=content)
        assert put.status_code == 201, put.text
        sealed = client.post(f"/api/v1/datasets/{ref}/seal")
        assert sealed.status_code == 200, sealed.text
    return ref


def logs(api: Api, job_id: str, key: str | None = None) -> str:
    """The job's output through the API (the CLI costs seconds per call on a busy host)."""
    with api.client(key) as client:
        answer = client.get(f"/api/v1/jobs/{job_id}/logs")
    assert answer.status_code == 200, answer.text
    return answer.text


def second_tenant(settings: Settings) -> str:
    """Create tenant ``umbrella`` in the server's database; its admin key."""
    platform = build_platform(settings)
    platform.tenancy.create_tenant("umbrella", "Umbrella", {"ascend": 8})
    key = platform.tenancy.create_key(
        Principal("op", Scope.OPERATOR, None),
        tenant="umbrella",
        scope=Scope.TENANT_ADMIN,
        name="",
        expires_in_s=None,
    ).secret
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    return key
