"""How each backend hands a job its dataset: a read-only bind at /data/input in the sandbox
(local, Slurm, confined Ray) with ``SUANWANG_DATASET_DIR`` pointing at it, and nothing
when the job names no dataset."""

from __future__ import annotations

import shlex
from pathlib import Path

from test_ray_backend import FakeRay, backend, confined, request

from suanwang.adapters.backends.sandbox import Confinement, RootLayout, bwrap_args
from suanwang.adapters.backends.slurm_run import run_argv
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.ports import LaunchRequest, NodeSlice

LAYOUT = RootLayout(symlinks=(("/bin", "usr/bin"),), directories=())
REPLICA = "/srv/storage/sh/tenants/acme/datasets/ds-000000000001"


def binds(args: list[str], option: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def test_the_sandbox_binds_the_replica_read_only_under_a_traversable_parent() -> None:
    job = Confinement(200001, Path("/w"), (), (), dataset_dir=Path(REPLICA))
    args = bwrap_args(LAYOUT, job)
    assert (REPLICA, DATASET_MOUNT) in binds(args, "--ro-bind")
    assert all(dst != DATASET_MOUNT for _, dst in binds(args, "--bind"))
    made = args.index("--dir")
    assert args[made - 2 : made + 2] == ["--perms", "0755", "--dir", "/data"]
    assert made < args.index(REPLICA)
    plain = bwrap_args(LAYOUT, Confinement(200001, Path("/w"), (), ()))
    assert DATASET_MOUNT not in plain
    assert "/data" not in plain


def slurm_request(dataset_dir: str | None) -> LaunchRequest:
    return LaunchRequest(
        job_id="j1", attempt=1, tenant="acme", cluster="slurm", command=("python", "t.py"),
        placements=(NodeSlice("n1", 1),), dataset_dir=dataset_dir,
    )  # fmt: skip


def test_slurm_jobs_get_the_same_bind_and_variable() -> None:
    argv = run_argv(
        slurm_request(REPLICA), Path("/spool/w"), 200001, None, "/code", "/usr/bin/bwrap"
    )
    assert (REPLICA, DATASET_MOUNT) in binds(argv, "--ro-bind")
    assert f"SUANWANG_DATASET_DIR={DATASET_MOUNT}" in argv
    unconfined = run_argv(slurm_request(REPLICA), Path("/spool/w"), None, None, "/code", None)
    assert f"SUANWANG_DATASET_DIR={REPLICA}" in unconfined
    plain = run_argv(slurm_request(None), Path("/spool/w"), 200001, None, "/code", "/usr/bin/bwrap")
    assert not any("SUANWANG_DATASET_DIR" in a for a in plain)


def test_confined_ray_jobs_get_the_bind_and_variable() -> None:
    ray = FakeRay()
    backend(ray).submit(request(("python", "t.py"), dataset_dir=REPLICA))
    (call,) = ray.submitted
    argv = confined(call["entrypoint"])
    assert (REPLICA, DATASET_MOUNT) in binds(argv, "--ro-bind")
    assert call["runtime_env"]["env_vars"]["SUANWANG_DATASET_DIR"] == DATASET_MOUNT
    assert shlex.quote(REPLICA) in call["entrypoint"]
