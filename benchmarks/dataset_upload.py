"""Dataset upload benchmark: streaming a file through the API vs writing it locally.

A real HTTP server (uvicorn in a process of its own, the server's app, SQLite) on 127.0.0.1;
an httpx client streams the file body in 1 MiB pieces (chunked encoding) to
``PUT /api/v1/datasets/{id}/files``, where it is hashed (SHA-256) and written to the storage
root, then committed to the manifest. Baseline in the same run: the same bytes hashed and
written to a file on the same disk by one process (what the server has to do at least),
fsync'd. Also: 8 tenants uploading at once (aggregate MB/s).

Run: ``.venv/bin/python benchmarks/dataset_upload.py [--mib 256]``.
Writes ``benchmarks/results/dataset_upload.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.tenancy import Principal, Scope

RESULTS = Path(__file__).parent / "results"
PIECE = 1 << 20
OP = Principal("op", Scope.OPERATOR, None)


def pieces(data: bytes) -> Iterator[bytes]:
    for at in range(0, len(data), PIECE):
        yield data[at : at + PIECE]


def baseline(data: bytes, directory: Path) -> float:
    """Seconds to hash and write ``data`` to a file and fsync it."""
    started = time.perf_counter()
    digest = hashlib.sha256()
    with (directory / "baseline.bin").open("wb") as f:
        for piece in pieces(data):
            digest.update(piece)
            f.write(piece)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """``suanwang``'s API in a uvicorn process of its own, over a prepared data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.keys = tenant_keys(Settings(data_dir=data_dir), 8)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ApiServer:
        env = os.environ | {
            "SUANWANG_DATA_DIR": str(self.data_dir),
            "SUANWANG_STORAGE_QUOTA_BYTES": str(1 << 40),
            "SUANWANG_LOG_LEVEL": "warning",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "suanwang.bootstrap:app_from_env",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)


def tenant_keys(settings: Settings, count: int) -> list[str]:
    platform = build_platform(settings)
    platform.fleet.apply_yaml("regions: [{name: r1}]\nclusters: []\n")
    keys = []
    for n in range(count):
        platform.tenancy.create_tenant(f"bench-{n}", f"bench {n}", {})
        keys.append(
            platform.tenancy.create_key(
                OP, tenant=f"bench-{n}", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
            ).secret
        )
    platform.uows.engine.dispose()  # type: ignore[attr-defined]
    return keys


def upload(base: str, key: str, name: str, data: bytes) -> float:
    """Seconds to create a dataset and stream ``data`` into it (until the 201)."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=None) as client:
        made = client.post("/api/v1/datasets", json={"name": name}).json()
        started = time.perf_counter()
        answer = client.put(
            f"/api/v1/datasets/{made['id']}/files",
            params={"path": "data.bin"},
            content=pieces(data),
        )
        elapsed = time.perf_counter() - started
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(data).hexdigest()
    return elapsed


def run(mib: int, runs: int) -> dict[str, Any]:
    data = os.urandom(mib << 20)
    small = data[: max(PIECE, len(data) // 8)]
    with (
        tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp,
        ApiServer(Path(tmp) / "data") as server,
    ):
        base = f"http://127.0.0.1:{server.port}"
        keys = server.keys
        base_s = sorted(baseline(data, Path(tmp)) for _ in range(runs))
        one_s = sorted(upload(base, keys[0], f"one-{n}", data) for n in range(runs))
        parallel = []
        for n in range(runs):
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=8) as pool:
                names = [f"par-{n}"] * len(keys)
                list(pool.map(upload, [base] * len(keys), keys, names, [small] * len(keys)))
            parallel.append(time.perf_counter() - started)
        parallel.sort()
    mb = len(data) / 1e6
    return {
        "file_mib": mib,
        "runs": runs,
        "baseline_mb_per_s": round(mb / base_s[len(base_s) // 2], 1),
        "upload_mb_per_s": round(mb / one_s[len(one_s) // 2], 1),
        "upload_vs_baseline": round(base_s[len(base_s) // 2] / one_s[len(one_s) // 2], 3),
        "eight_tenants_file_mib": len(small) >> 20,
        "eight_tenants_aggregate_mb_per_s": round(
            8 * len(small) / 1e6 / parallel[len(parallel) // 2], 1
        ),
        "cpus": os.cpu_count(),
        "load_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = run(args.mib, args.runs)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dataset_upload.json").write_text(json.dumps(result, indent=2) + "\n")
    mib, tenants_mib = result["file_mib"], result["eight_tenants_file_mib"]
    rows = [
        (f"baseline: hash + write + fsync, one process, {mib} MiB", "baseline_mb_per_s"),
        (f"upload through the API (streamed, SHA-256 on the server), {mib} MiB", "upload_mb_per_s"),
        (
            f"8 tenants at once, {tenants_mib} MiB each (aggregate)",
            "eight_tenants_aggregate_mb_per_s",
        ),
    ]
    table = [
        "# Dataset upload (median of runs)",
        "",
        "| what | MB/s |",
        "|---|---|",
        *(f"| {what} | {result[key]} |" for what, key in rows),
        "",
        f"Upload / baseline: {result['upload_vs_baseline']}. {result['cpus']} CPUs, "
        f"load {result['load_1m_at_end']} at the end (the machine is shared; the client runs "
        "on the same cores).",
    ]
    (RESULTS / "dataset_upload.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
