"""One round of hostile-tenant attacks against a running :class:`~hostile_stack.Stack` (suite R10).

Tenant A runs a victim job (a secret file in its own area, a heartbeat in its log); tenant
B runs a bystander (a heartbeat) and then submits every attack at once, as traffic arrives.
The round then cancels the attacks that wait to be cancelled, and records what the tests
assert on: each job's state, reason and log, whether the victim, the bystander and a
sacrificial root process survived, which escaped processes outlived their job, and how the
API answered meanwhile. Facts about the machine (paths, pids) are found by the test as
root and handed to the attacker in its job's ``env``.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hostproc
import httpx
from hostile_stack import CANCEL_GRACE_S, TERMINAL, Api, Stack
from hostile_targets import (
    bytes_under,
    expected_attempts,
    machine_targets,
    platform_files,
    tenant_owned_outside_areas,
)

ATTACK_SOURCE = Path(__file__).with_name("attacks.py").read_text()
JOB_PYTHON = sys.executable
FINITE = (
    "read-operator-key",
    "read-database",
    "read-journals",
    "read-victim",
    "write-victim",
    "write-state",
    "write-code",
    "signal",
    "read-environ",
    "connect-postgres",
    "connect-redis",
)
FORGERIES = ("forge-launch-sacrificial", "forge-launch-victim", "forge-exit")
ESCAPES = ("escape-cancel", "escape-exit")
EXHAUSTION = ("fork-bomb", "fill-memory", "fill-disk", "fill-tmp", "fill-log")
WAITERS = (*FORGERIES, "escape-cancel", "squat-host-port")
ALL_ATTACKS = (*FINITE, *FORGERIES, *ESCAPES, *EXHAUSTION, "squat-host-port", "symlink-trap")
RETRIED = {"symlink-trap": 1}  # attack -> retries: its first attempt fails on purpose
VERDICT = re.compile(r"^ATTACK (\S+) (\S+) (BLOCKED|SUCCEEDED) ?(.*)$", re.MULTILINE)
WHOAMI = re.compile(r"^WHOAMI uid=(\d+) gid=(\d+)", re.MULTILINE)
JOB_ENDED_S = 240.0


@dataclass
class Verdict:
    attack: str
    target: str
    outcome: str
    detail: str


@dataclass
class JobRun:
    """A job of the round and what became of it."""

    name: str
    tenant: str
    token: str
    job_id: str
    targets: dict[str, Any]
    state: str = ""
    reason: str = ""
    exit_code: int | None = None
    attempts: int = 0
    log: str = ""
    state_before_cancel: str = ""
    bytes_on_host: int = 0
    host_connected: str = ""
    survivors: list[hostproc.Proc] = field(default_factory=list)
    escaped_before_cancel: list[hostproc.Proc] = field(default_factory=list)

    def verdicts(self) -> list[Verdict]:
        return [Verdict(*m.groups()) for m in VERDICT.finditer(self.log)]

    def uid(self) -> int | None:
        match = WHOAMI.search(self.log)
        return int(match.group(1)) if match else None

    def describe(self) -> str:
        return (f"{self.name} ({self.job_id}) {self.state} exit={self.exit_code} "
                f"reason={self.reason!r}\n--- log ---\n{self.log[-4000:]}")  # fmt: skip


@dataclass
class Round:
    """Everything the tests of one backend assert on."""

    backend: str
    jobs: dict[str, JobRun]
    victim: JobRun
    bystander: JobRun
    victim_procs: list[hostproc.Proc]
    victim_alive_after: list[hostproc.Proc]
    targets: dict[str, Any]
    secret_paths: list[str]
    secret: str
    secret_after: dict[str, str]
    planted_after: list[str]
    sacrificial_alive: bool
    bystander_beats: tuple[int, int, int]
    bystander_state_after: str
    victim_state_after: str
    api_errors: list[str]
    api_max_latency_s: float
    api_checks: int
    expected_attempts: dict[str, int]
    server_uid: int
    leftover_b: list[hostproc.Proc]
    platform_files: tuple[dict[str, tuple[int, ...] | str], dict[str, tuple[int, ...] | str]]
    tenant_owned_outside_areas: list[str]
    server_log: str


class ApiMonitor(threading.Thread):
    """Asks the API for its health and tenant A's jobs every quarter second."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.max_latency_s = 0.0
        self.checks = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=15) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    for path in ("/healthz", "/api/v1/jobs?limit=5"):
                        status = client.get(path).status_code
                        if status != 200:
                            self.errors.append(f"{path}: {status}")
                except httpx.HTTPError as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                self.max_latency_s = max(self.max_latency_s, time.monotonic() - started)
                self.checks += 1
                self.stop.wait(0.25)


def submit(stack: Stack, api: Api, tenant: str, name: str, targets: dict[str, Any]) -> JobRun:
    token = f"hostile-{name}-{secrets.token_hex(6)}"
    stack.tokens.append(token)
    body = {
        "name": name,
        "command": [JOB_PYTHON, "-c", ATTACK_SOURCE, name, token],
        "env": {"HOSTILE_TARGETS": json.dumps(targets)},
        "resources": {"chip": "cpu", "cluster": "local"},
        "max_runtime_s": 600,
        "retries": RETRIED.get(name, 0),
    }
    created = api.call("POST", "/api/v1/jobs", json=body)
    return JobRun(name, tenant, token, created["id"], targets)


def finish(api: Api, run: JobRun) -> None:
    """Record the job's state, reason, exit code and log."""
    job = api.job(run.job_id)
    run.state, run.reason, run.log = job["state"], job["reason"], api.log(run.job_id)
    attempts = job.get("attempt_history") or []
    run.exit_code = attempts[-1]["exit_code"] if attempts else None
    run.attempts = int(job["attempts"])


def beats(api: Api, run: JobRun, word: str) -> int:
    return len(re.findall(rf"^{word} ", api.log(run.job_id), re.MULTILINE))


def play(stack: Stack) -> Round:
    """Run the whole round; every process it starts is stopped before it returns."""
    a, b = stack.api("a"), stack.api("b")
    sacrificial = subprocess.Popen(["sleep", "900"], start_new_session=True)
    monitor = ApiMonitor(stack.url, stack.keys["a"])
    try:
        return _play(stack, a, b, sacrificial, monitor)
    finally:
        monitor.stop.set()
        sacrificial.kill()
        sacrificial.wait(timeout=10)
        a.close()
        b.close()


def _play(
    stack: Stack, a: Api, b: Api, sacrificial: subprocess.Popen[bytes], monitor: ApiMonitor
) -> Round:
    secret_name, secret = f"secret-{secrets.token_hex(6)}.txt", secrets.token_hex(32)
    victim = submit(stack, a, "a", "victim", {"secret_name": secret_name, "secret": secret})
    bystander = submit(stack, b, "b", "bystander", {})
    a.wait(victim.job_id, lambda j, log: "VICTIM beat 1 " in log, 90, "victim started")
    b.wait(bystander.job_id, lambda j, log: "BEAT 1" in log, 90, "bystander started")
    targets = machine_targets(stack, victim.token, victim.job_id, secret_name)
    sac = hostproc.read_proc(sacrificial.pid)
    assert sac is not None
    targets["sacrificial"] = {"pid": sac.pid, "start_time": sac.start_time, "pgid": sac.pgid,
                              "sid": sac.sid}  # fmt: skip
    victim_procs = hostproc.with_token(victim.token)
    platform_before = platform_files(stack)
    beats_before = beats(b, bystander, "BEAT")
    monitor.start()

    def launch(name: str) -> JobRun:
        extra = {"marker": f"hostile-escaped-{secrets.token_hex(6)}"} if name in ESCAPES else {}
        run = submit(stack, b, "b", name, targets | extra)
        if extra:
            stack.tokens.append(extra["marker"])
        return run

    with ThreadPoolExecutor(len(ALL_ATTACKS)) as pool:
        jobs = {run.name: run for run in pool.map(launch, ALL_ATTACKS)}
    for name in ALL_ATTACKS:
        if name in WAITERS:
            b.wait(jobs[name].job_id, lambda j, log: "READY" in log or j["state"] in TERMINAL,
                   JOB_ENDED_S, f"{name} ready")  # fmt: skip
        else:
            b.wait(jobs[name].job_id, lambda j, log: j["state"] in TERMINAL, JOB_ENDED_S, name)
    for name in EXHAUSTION:
        jobs[name].bytes_on_host = bytes_under(stack, jobs[name].job_id)
    beats_after_attacks = beats(b, bystander, "BEAT")
    time.sleep(2.0)  # the bystander must keep beating after the exhaustion attacks
    beats_later = beats(b, bystander, "BEAT")
    _cancel_waiters(b, jobs)
    for name in ESCAPES:
        jobs[name].survivors = hostproc.wait_gone(jobs[name].targets["marker"], 15)
    for run in jobs.values():
        finish(b, run)
    bystander_state = b.job(bystander.job_id)["state"]
    victim_state = a.job(victim.job_id)["state"]
    victim_alive = [p for p in victim_procs if hostproc.same_process(p)]
    secret_paths = [p for p in targets["victim"] if p.endswith(secret_name) and "/proc/" not in p]
    secret_after = {p: _read(Path(p)) for p in secret_paths}
    planted = [str(p) for p in stack.workdir.rglob("planted-by-*")]
    sacrificial_alive = sacrificial.poll() is None
    platform_after = platform_files(stack)
    monitor.stop.set()
    monitor.join(timeout=30)
    for api, run in ((a, victim), (b, bystander)):
        api.cancel(run.job_id)
        api.wait(run.job_id, lambda j, log: j["state"] in TERMINAL, 60, f"{run.name} cancelled")
        finish(api, run)
    b_uid = bystander.uid()
    leftover = _wait_no_uid(b_uid, 15) if b_uid else []
    server = hostproc.read_proc(stack.server_pids()[0])
    assert server is not None
    return Round(
        backend=stack.backend,
        jobs=jobs,
        victim=victim,
        bystander=bystander,
        victim_procs=victim_procs,
        victim_alive_after=victim_alive,
        targets=targets,
        secret_paths=secret_paths,
        secret=secret,
        secret_after=secret_after,
        planted_after=planted,
        sacrificial_alive=sacrificial_alive,
        bystander_beats=(beats_before, beats_after_attacks, beats_later),
        bystander_state_after=bystander_state,
        victim_state_after=victim_state,
        api_errors=monitor.errors,
        api_max_latency_s=monitor.max_latency_s,
        api_checks=monitor.checks,
        expected_attempts=expected_attempts(targets),
        server_uid=server.uid,
        leftover_b=leftover,
        platform_files=(platform_before, platform_after),
        tenant_owned_outside_areas=tenant_owned_outside_areas(stack, server.uid),
        server_log=stack.log.read_text(errors="replace"),
    )


def _cancel_waiters(b: Api, jobs: dict[str, JobRun]) -> None:
    """Cancel the jobs that wait for it, after checking the forged exit was not believed."""
    time.sleep(1.0)  # ten ticks after the forgeries were written
    for name in WAITERS:
        run = jobs[name]
        run.state_before_cancel = b.job(run.job_id)["state"]
        if name == "escape-cancel":
            run.escaped_before_cancel = hostproc.with_token(run.targets["marker"])
        if name == "squat-host-port":
            run.host_connected = _connect_from_host(int(run.targets["squat_port"]))
        b.cancel(run.job_id)
    for name in WAITERS:
        b.wait(jobs[name].job_id, lambda j, log: j["state"] in TERMINAL,
               30 + CANCEL_GRACE_S, f"{name} cancelled")  # fmt: skip


def _connect_from_host(port: int) -> str:
    """What a host process reaching 127.0.0.1:port found ("" if nobody listened)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected to the job's listener"
    except OSError:
        return ""


def _wait_no_uid(uid: int, timeout_s: float) -> list[hostproc.Proc]:
    deadline = time.monotonic() + timeout_s
    while (left := hostproc.with_uid(uid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        return f"unreadable: {exc}"
