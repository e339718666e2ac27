"""Without the privilege to switch users, the local cluster refuses tenant jobs (issue 9).

The control plane runs as an unprivileged numeric uid (``setpriv``; no passwd entry) with
a data directory it owns. In the default ``sandbox`` isolation it cannot give a tenant's
job a uid of its own, so a job aimed at the local cluster is refused at submission (422,
field ``resources.cluster``); one that names no cluster is refused too, at submission or
when it is placed, with an error that names the single-user development mode. With
``SUANWANG_LOCAL_ISOLATION=single-user-dev`` the same job runs, and ``suanwang server``
says which mode it is in when it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hostile_stack import CLI, TERMINAL, Api, free_port

pytestmark = pytest.mark.timeout(300)
SERVICE_UID = 198_765  # unprivileged, outside the tenant range, no passwd entry
FLEET = """
regions: [{name: here}]
clusters:
  - {name: local, region: here, kind: real, nodes: [{name: n1, chip: cpu, cards: 2}]}
"""
REFUSAL = "the local cluster cannot sandbox tenant jobs here:"
HELLO = [sys.executable, "-c", "print('hello from an unsandboxed job')"]


def interpreter_view(workdir: Path) -> list[str]:
    """An argv prefix under which :data:`SERVICE_UID` can reach this interpreter.

    Here Python lives under ``/root`` (0700, pyenv), which no other uid may enter. The
    prefix runs the command in a private mount namespace whose ``/root`` is a 0711
    directory holding only the interpreter's tree (what bwrap does for a sandbox), so the
    machine's ``/root`` is untouched. Empty where the interpreter is reachable already.
    """
    base = Path(sys.base_prefix).resolve()
    closed = next((d for d in reversed(base.parents) if not d.stat().st_mode & 0o001), None)
    if closed is None:
        return []
    top = base.relative_to(closed).parts[0]
    view = workdir / "interpreter-view"
    (view / top).mkdir(parents=True)
    os.chmod(view, 0o711)
    script = 'mount --bind "$1" "$2" && mount --rbind "$3" "$4" && shift 4 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
            "view", str(closed / top), str(view / top), str(view), str(closed)]  # fmt: skip


class Unprivileged:
    """``suanwang`` commands run as :data:`SERVICE_UID` on a data directory it owns."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(mode=0o700)
        os.chown(self.data_dir, SERVICE_UID, SERVICE_UID)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUANWANG_")}
        self.env |= {
            "HOME": str(self.data_dir),
            "SUANWANG_DATA_DIR": str(self.data_dir),
            "SUANWANG_PORT": str(self.port),
            "SUANWANG_TICK_S": "0.1",
            "SUANWANG_LOG_LEVEL": "warning",
            "NO_COLOR": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.view = interpreter_view(workdir)

    def argv(self, *args: str) -> list[str]:
        drop = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups"]
        return [*self.view, *drop, "--", *CLI, *args]

    def init(self) -> str:
        subprocess.run(
            self.argv("init", "--no-demo"), env=self.env, cwd=self.data_dir, check=True,
            capture_output=True, timeout=120,
        )  # fmt: skip
        return (self.data_dir / "operator.key").read_text().strip()

    def serve(self, isolation: str | None) -> Path:
        """Start ``suanwang server`` (no gateway) in ``isolation``; returns its output file."""
        env = dict(self.env)
        if isolation is not None:
            env["SUANWANG_LOCAL_ISOLATION"] = isolation
        log = self.workdir / f"server-{isolation or 'default'}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv("server", "--no-gateway"), env=env, cwd=self.data_dir,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                return log
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"the server did not come up: {log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture
def unprivileged() -> Iterator[Unprivileged]:
    if os.geteuid() != 0:
        pytest.fail("this test starts the control plane as another uid: run it as root")
    workdir = Path(tempfile.mkdtemp(prefix="suanwang-refusal-"))
    os.chmod(workdir, 0o711)
    service = Unprivileged(workdir)
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def set_up(service: Unprivileged, operator_key: str) -> Api:
    """Fleet, a tenant and its member key; returns the member's client."""
    url = f"http://127.0.0.1:{service.port}"
    op = Api(url, operator_key)
    try:
        op.call("POST", "/api/v1/fleet/apply", content=FLEET)
        op.call("POST", "/api/v1/tenants", json={"name": "acme"})
        key = op.call("POST", "/api/v1/keys", json={"tenant": "acme", "scope": "tenant-member"})
    finally:
        op.close()
    return Api(url, key["key"])


def submit(member: Api, cluster: str | None) -> httpx.Response:
    resources = {"chip": "cpu"} | ({"cluster": cluster} if cluster else {})
    body = {"name": "hello", "command": HELLO, "resources": resources}
    return member.client.post("/api/v1/jobs", json=body)


def wait_ended(member: Api, job_id: str) -> dict[str, object]:
    return member.wait(job_id, lambda j, log: j["state"] in TERMINAL, 60, "job ended")


def test_tenant_jobs_are_refused_without_the_privilege_to_switch_users(
    unprivileged: Unprivileged,
) -> None:
    key = unprivileged.init()
    unprivileged.serve(isolation=None)
    member = set_up(unprivileged, key)
    try:
        aimed = submit(member, "local")
        assert aimed.status_code == 422, aimed.text
        assert aimed.json()["field"] == "resources.cluster", aimed.text
        assert "single-user-dev" in aimed.text, aimed.text
        placed = submit(member, None)  # the scheduler could only place it on local
        if placed.status_code == 422:  # refused at submission: no cluster can run it
            assert REFUSAL in placed.text, placed.text
            assert "SUANWANG_LOCAL_ISOLATION=single-user-dev" in placed.text, placed.text
            return
        assert placed.status_code == 201, placed.text
        job = wait_ended(member, placed.json()["id"])
        assert job["state"] == "failed", job
        assert REFUSAL in str(job["reason"]), job
        assert "SUANWANG_LOCAL_ISOLATION=single-user-dev" in str(job["reason"]), job
        assert "hello from" not in member.log(placed.json()["id"])
    finally:
        member.close()


def test_single_user_development_mode_runs_them_and_says_so(unprivileged: Unprivileged) -> None:
    key = unprivileged.init()
    log = unprivileged.serve(isolation="single-user-dev")
    member = set_up(unprivileged, key)
    try:
        created = submit(member, "local")
        assert created.status_code == 201, created.text
        job = wait_ended(member, created.json()["id"])
        assert job["state"] == "succeeded", job
        assert member.log(created.json()["id"]) == "hello from an unsandboxed job\n"
    finally:
        member.close()
    assert "single-user-dev" in log.read_text(), log.read_text()
