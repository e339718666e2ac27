"""Autoscaling live (issue 13): SmolLM2 on llama.cpp deployed through suanwang, behind a real
gateway process that reports its demand, with the real control loop and autoscaler.

The local cluster has 2 cpu slots. One deployment, autoscaled 1..2 for a p95 TTFT SLO
(``slo_ttft_p95_s``: the queueing model on what the gateway measures) with short cooldowns
(0..2 from step 3), shares them with the example training job
(``examples/train_checkpointed.py``, best-effort, preemptible), and walks through its life:

1. a load generator ramps to 12 concurrent clients (streamed and plain): the deployment scales
   1 -> 2; the second replica has no free slot, so the scheduler preempts the training job
   (it checkpoints on SIGTERM and exits 75); the second replica becomes ready and serves;
2. the load falls to 3 clients, still running: the deployment scales back to 1; the second
   replica drains (no new requests, its own finish) before its job stops; every request of
   the whole run completes with 200 and a full body; the slot goes back to training, which
   resumes from its checkpoint and ends with the result of an uninterrupted run;
3. the load stops and the range becomes 0..2: after its idle time (3 s) the deployment goes
   to 0 replicas;
4. a request through a gateway whose cold-start timeout is shorter than a start gets 503 with
   Retry-After; another tenant's request is "model not found" and wakes nothing; the owner's
   request waits for the cold start and is answered.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from gateway_stack import Stack, make_stack
from live_engines import missing_packages

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.autoscaling import AutoscaleSpec, ScalingTarget
from suanwang.domain.checkpoints import RESUME_EXIT_CODE
from suanwang.domain.deployments import ReplicaRecord
from suanwang.domain.jobs import AttemptState, JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
CHAT = "smollm2-135m-instruct"
FLEET = """
regions: [{name: local}]
clusters:
  - {name: local, region: local, kind: real, backend: local, nodes: [{name: n1, chip: cpu, cards: 2}]}
"""
EXAMPLE = Path(__file__).parents[2] / "examples" / "train_checkpointed.py"
TRAIN_ARGS = ("--steps", "2000", "--checkpoint-every", "50")
pytestmark = pytest.mark.skipif(
    sandbox_refusal(probe_host()) is not None, reason=str(sandbox_refusal(probe_host()))
)
SCALING = AutoscaleSpec(
    min_replicas=1,
    max_replicas=2,
    # Sized by the queueing model from what the gateway measures (rate, service time,
    # no-wait first token; 8 slots a replica): 12 clients keep more than one replica's 8
    # slots busy, 3 do not. 5 s: a CPU replica's first token alone can take 0.5 s here.
    target=ScalingTarget(slo_ttft_p95_s=5.0),
    scale_up_cooldown_s=0.0,
    scale_down_cooldown_s=4.0,
    idle_to_zero_s=3.0,
)
TENANT, OTHER, LAB = "auto-live", "auto-other", "auto-lab"
COLD_START_TIMEOUT_S = 60.0


@dataclass
class Live:
    platform: Platform
    stack: Stack
    dep: str
    keys: dict[str, str]
    gateway: str = ""

    def replicas(self) -> list[ReplicaRecord]:
        return self.platform.deployments.get(OP, self.dep).replicas

    def states(self) -> list[str]:
        return [r.state.value for r in self.replicas()]

    def wanted(self) -> int:
        return self.platform.deployments.get(OP, self.dep).deployment.replicas

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 90.0) -> float:
        began = time.monotonic()
        while not done():
            assert time.monotonic() - began < timeout, f"not in {timeout:.0f} s: {what}: " + str(
                [(r.id, r.state.value, r.reason) for r in self.replicas()]
            )
            time.sleep(0.1)
        return time.monotonic() - began


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    stack = make_stack(tmp_path_factory.mktemp("autoscaling-live"))
    base = stack.settings
    settings = Settings(
        data_dir=base.data_dir, database_url=base.database_url, llama_threads=1, llama_slots=8
    )
    platform = build_platform(settings, run_migrations=False)
    platform.fleet.apply_yaml(FLEET)
    keys = {}
    for tenant in (TENANT, OTHER, LAB):
        platform.tenancy.create_tenant(tenant, tenant, {"cpu": 2} if tenant != LAB else {})
        keys[tenant] = platform.tenancy.create_key(
            OP, tenant=tenant, scope=Scope.TENANT_ADMIN, name="", expires_in_s=None
        ).secret
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            platform.control.tick()
            platform.deployments.check_health()
            stop.wait(0.2)

    thread = threading.Thread(target=loop, name="autoscaling-live-loop", daemon=True)
    thread.start()
    detail = platform.deployments.deploy(OP, CHAT, "local", 1, tenant=TENANT, autoscale=SCALING)
    live = Live(platform, stack, detail.deployment.id, keys)
    try:
        live.wait(lambda: live.states() == ["ready"], "first replica ready", 180)
        live.gateway = f"http://127.0.0.1:{stack.start_gateway()}/v1"
        yield live
    finally:
        platform.deployments.delete(OP, live.dep)
        with platform.uows() as uow:
            trainings = [j.id for j in uow.jobs.jobs(LAB) if not j.state.terminal]
        for job in trainings:  # left by a failed run
            platform.jobs.cancel(OP, job)
        live.wait(lambda: not _live_jobs(platform), "jobs stopped", 60)
        stop.set()
        thread.join(10)
        stack.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def _live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


@dataclass
class Load:
    """Clients that each send one request after another (odd ones streamed) until stopped."""

    url: str
    key: str
    results: list[tuple[bool, int, str]] = field(default_factory=list)
    """(streamed, status, what was wrong or "")."""
    _workers: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    def clients(self, n: int) -> None:
        """Run ``n`` clients: start more, or stop the newest (their request in progress ends)."""
        while len(self._workers) < n:
            stop = threading.Event()
            streamed = len(self._workers) % 2 == 1
            thread = threading.Thread(target=self._client, args=(stop, streamed), daemon=True)
            thread.start()
            self._workers.append((thread, stop))
        while len(self._workers) > n:
            thread, stop = self._workers.pop()
            stop.set()
            thread.join(120)

    def _client(self, stop: threading.Event, streamed: bool) -> None:
        with httpx.Client(timeout=120, headers={"authorization": f"Bearer {self.key}"}) as http:
            while not stop.is_set():
                self.results.append(_one(http, self.url, streamed))


def _one(http: httpx.Client, url: str, streamed: bool) -> tuple[bool, int, str]:
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
        "max_tokens": 24,
        "stream": streamed,
    }
    response = http.post(f"{url}/chat/completions", json=body)
    if response.status_code != 200:
        return streamed, response.status_code, response.text[:200]
    if streamed:
        text = response.text
        whole = text.rstrip().endswith("data: [DONE]") and '"finish_reason":"' in text.replace(
            " ", ""
        )
        return streamed, 200, "" if whole else f"stream cut: {text[-200:]!r}"
    choice = response.json()["choices"][0]
    whole = choice["finish_reason"] in ("stop", "length") and choice["message"]["content"]
    return streamed, 200, "" if whole else f"incomplete answer: {choice!r}"


def test_load_scales_up_preempting_training_then_down_with_drain_to_zero_and_a_cold_start(
    live: Live, tmp_path: Path
) -> None:
    expected = _uninterrupted(tmp_path / "whole")
    lab = live.platform.tenancy.authenticate(live.keys[LAB])
    job = live.platform.jobs.submit(lab, _training(), None).job.id
    training = lambda: live.platform.jobs.get(lab, job)  # noqa: E731
    live.wait(lambda: bool(training().attempts and training().attempts[0].last_checkpoint_at), "")
    load = Load(live.gateway, live.keys[TENANT])
    load.clients(12)
    up_s = live.wait(lambda: live.wanted() == 2, "scale 1 -> 2 under 12 clients")
    live.wait(lambda: training().attempts[0].state.ended, "training preempted")
    first = training().attempts[0]
    assert (first.state, first.exit_code) == (AttemptState.PREEMPTED, RESUME_EXIT_CODE)
    assert any("serving: production replica" in e.reason for e in training().events)
    ready_s = live.wait(lambda: live.states() == ["ready", "ready"], "second replica ready")
    assert training().job.state is JobState.QUEUED, "no slot for training while both serve"
    second = live.replicas()[1].id
    live.wait(lambda: _served_by(live, second) > 0, "second replica serving")
    load.clients(3)  # still running while the deployment scales down
    down_s = live.wait(lambda: live.wanted() == 1, "scale 2 -> 1 under 3 clients")
    live.wait(lambda: live.states()[1] == "stopped", "second replica drained and stopped")
    drained_reason = live.replicas()[1].reason
    load.clients(0)
    failed = [r for r in load.results if r[1] != 200 or r[2]]
    assert not failed, failed[:5]
    assert len(load.results) >= 24
    assert {streamed for streamed, _, _ in load.results} == {True, False}
    assert "drained after" in drained_reason, drained_reason
    trained_s = live.wait(lambda: training().job.state.terminal, "training resumed and done", 150)
    assert training().job.state is JobState.SUCCEEDED, training().job.reason
    resumed = _log(live, lab, job, 2)
    stopped = re.findall(r"stopped at step (\d+)", _log(live, lab, job, 1))
    assert stopped
    assert f"resumed at step {stopped[0]} (resume count 1)" in resumed, resumed
    assert next(line for line in resumed.splitlines() if line.startswith("RESULT ")) == expected
    live.platform.deployments.set_autoscale(OP, live.dep, replace(SCALING, min_replicas=0))
    zero_s = live.wait(lambda: live.wanted() == 0 and set(live.states()) == {"stopped"}, "to zero")
    sys.stderr.write(
        f"\nautoscaling live: up after {up_s:.1f} s, second replica ready {ready_s:.1f} s later,"
        f" down after {down_s:.1f} s, training done {trained_s:.1f} s after the drain,"
        f" zero after {zero_s:.1f} s, {len(load.results)} requests all complete\n"
    )
    _cold_start(live)


def _training() -> JobSpec:
    return JobSpec(
        name="train",
        command=("python", "-c", EXAMPLE.read_text(), *TRAIN_ARGS, "--step-sleep", "0.01"),
        resources=Resources(chip="cpu"),
        checkpoint_interval_s=1,
        preemption_grace_s=20.0,
        priority_class="best-effort",
    )


def _uninterrupted(tmp: Path) -> str:
    argv = [sys.executable, str(EXAMPLE), "--checkpoint-dir", str(tmp), *TRAIN_ARGS]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))


def _log(live: Live, who: Principal, job: str, attempt: int) -> str:
    chunk, _ = live.platform.jobs.logs(who, job, 0, 1 << 20, attempt)
    return chunk.decode(errors="replace")


def _served_by(live: Live, replica: str) -> int:
    return sum(1 for row in live.stack.ledger(TENANT) if row["replica"] == replica)


def _cold_start(live: Live) -> None:
    other = httpx.post(
        f"{live.gateway}/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        headers={"authorization": f"Bearer {live.keys[OTHER]}"},
        timeout=30,
    )
    assert other.status_code == 404, other.text
    assert other.json()["error"]["code"] == "model_not_found"
    time.sleep(1.5)
    assert live.wanted() == 0  # another tenant's request woke nothing
    impatient = _second_gateway(live, timeout_s=0.5)
    try:
        refused = _chat(f"http://127.0.0.1:{impatient}/v1", live.keys[TENANT])
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "10"
        assert refused.json()["error"]["code"] == "cold_start_timeout"
    finally:
        live.stack.gateways[-1][1].terminate()
    began = time.monotonic()
    answered = _chat(live.gateway, live.keys[TENANT])
    waited = time.monotonic() - began
    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["message"]["content"]
    assert waited < COLD_START_TIMEOUT_S
    sys.stderr.write(f"autoscaling live: cold start answered in {waited:.1f} s\n")


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions",
        json={"model": CHAT, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
        headers={"authorization": f"Bearer {key}"},
        timeout=COLD_START_TIMEOUT_S + 30,
    )


def _second_gateway(live: Live, timeout_s: float) -> int:
    env = dict(live.stack.env)
    live.stack.env = {**env, "SUANWANG_GATEWAY_COLD_START_TIMEOUT_S": str(timeout_s)}
    try:
        return live.stack.start_gateway()
    finally:
        live.stack.env = env
