"""SmolLM2 served from an engine backend's cluster through the gateway (issue 12, point 4).

:func:`serving_on` starts, for one test module, a platform whose fleet has one engine
cluster (Slurm, Ray...) of ``cpu`` slots, its control loop as a thread (control tick,
cluster health and engine health checks every 0.2 s, like ``live_engines.py``), deploys
SmolLM2 on llama.cpp there, waits until the replica is ready and starts one gateway
process on the same database. The replica runs as a job of that engine, on the node it
placed it on; the control plane routes to it only at the address the backend reported
for that node (``domain/endpoints.py``).

:func:`chat_eight_at_once` is the acceptance check: 8 concurrent chat completions with
the unchanged ``openai`` client all answer, and the usage ledger bills each one with the
tokens its response reported, to the deployment and replica, as for a local replica. The
client runs in a process of its own (:func:`chat_at_once`), so that it can run where the
gateway is (a network namespace for Ray).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway_stack import Stack, make_stack
from live_engines import OP

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.deployments import ReplicaRecord
from suanwang.domain.serving import ReplicaState
from suanwang.services.platform import Platform

CHAT = "smollm2-135m-instruct"
READY_TIMEOUT_S = 120.0
CONCURRENT = 8
MAX_TOKENS = 12


@dataclass
class Served:
    platform: Platform
    stack: Stack
    deployment: str
    gateway_url: str

    def replica(self) -> ReplicaRecord:
        return self.platform.deployments.get(OP, self.deployment).replicas[0]

    def attempt_handle(self) -> dict[str, object]:
        job = self.replica().job
        assert job is not None
        with self.platform.uows() as uow:
            return dict(uow.jobs.attempts(job)[-1].handle)


def wait_for(done: Callable[[], bool], what: Callable[[], str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not in {timeout:.0f} s: {what()}"
        time.sleep(0.2)


@contextmanager
def serving_on(
    tmp: Path, fleet: str, cluster: str, settings: dict[str, object]
) -> Iterator[Served]:
    """SmolLM2 deployed on ``cluster`` of ``fleet``, ready, behind a gateway (see above).

    ``settings`` are the platform's own (engine uid, tenant uid range...) over the stack's
    data directory and database; llama-server gets 1 thread and 4 slots.
    """
    stack = make_stack(tmp)
    base = stack.settings
    platform = build_platform(
        Settings(
            data_dir=base.data_dir,
            database_url=base.database_url,
            llama_threads=1,
            llama_slots=4,
            **settings,  # type: ignore[arg-type]
        ),
        run_migrations=False,
    )
    platform.fleet.apply_yaml(fleet)
    platform.cluster_health.check()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            platform.cluster_health.tick()
            platform.control.tick()
            platform.deployments.check_health()
            stop.wait(0.2)

    thread = threading.Thread(target=loop, name="engine-serving-loop", daemon=True)
    thread.start()
    dep = platform.deployments.deploy(OP, CHAT, cluster, 1).deployment.id
    served = Served(platform, stack, dep, "")
    try:
        time.monotonic()
        wait_for(
            lambda: served.replica().state is ReplicaState.READY,
            lambda: f"replica {served.replica()}",
            READY_TIMEOUT_S,
        )
        served.gateway_url = f"http://127.0.0.1:{stack.start_gateway()}/v1"
        yield served
    finally:
        platform.deployments.delete(OP, dep)
        wait_for(lambda: not _live_jobs(platform), lambda: "replica jobs still live", 60)
        stop.set()
        thread.join(10)
        stack.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def _live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


CLIENT = r"""
import asyncio, json, sys
import openai
url, key, n, max_tokens, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
async def main():
    client = openai.AsyncOpenAI(base_url=url, api_key=key, timeout=60, max_retries=0)
    async def create(i):
        return await client.chat.completions.create(
            model=model, max_tokens=max_tokens,
            messages=[{"role": "user", "content": f"Say hello to friend number {i}."}])
    async def one(i):
        # the gateway's view of ready replicas lags the database by up to one refresh:
        # "model_not_ready" (503, Retry-After) is retried for a few seconds, as clients do
        for _ in range(20):
            try:
                answer = await create(i)
                break
            except openai.InternalServerError as e:
                if e.code != "model_not_ready":
                    raise
                await asyncio.sleep(0.5)
        else:
            answer = await create(i)
        u = answer.usage
        return {"model": answer.model, "content": answer.choices[0].message.content,
                "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens}
    try:
        print(json.dumps(await asyncio.gather(*(one(i) for i in range(n)))))
    finally:
        await client.close()
asyncio.run(main())
"""


def chat_at_once(
    gateway_url: str, key: str, prefix: Sequence[str] = (), n: int = CONCURRENT
) -> list[dict[str, Any]]:
    """``n`` chat completions at once with the unchanged ``openai`` client, in a process of
    its own (run under ``prefix``, e.g. ``ip netns exec NS``); each answer's model, text
    and usage."""
    argv = [*prefix, sys.executable, "-c", CLIENT, gateway_url, key, str(n), str(MAX_TOKENS), CHAT]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def check_answered_and_billed(
    answers: list[dict[str, Any]], rows: list[dict[str, Any]], deployment: str, replica: str
) -> None:
    """Every answer has text and usage; the ledger has one row per answer with its tokens,
    for the deployment and replica that served it (as for a local replica)."""
    assert len(answers) == CONCURRENT
    for answer in answers:
        assert answer["model"] == CHAT
        assert answer["content"], answer
        assert answer["completion_tokens"] > 0
    assert len(rows) == CONCURRENT
    billed = sorted((int(r["prompt_tokens"]), int(r["completion_tokens"])) for r in rows)
    assert billed == sorted((a["prompt_tokens"], a["completion_tokens"]) for a in answers)
    assert {(r["model"], r["deployment"], r["replica"], r["status"]) for r in rows} == {
        (CHAT, deployment, replica, 200)
    }


def chat_eight_at_once(served: Served, tenant: str) -> None:
    """8 concurrent chats through the gateway all answer; the ledger bills their usage."""
    key, _ = served.stack.tenant_with_key(tenant)
    started = time.monotonic()
    answers = chat_at_once(served.gateway_url, key)
    elapsed = time.monotonic() - started
    rows = served.stack.wait_ledger(tenant, CONCURRENT)  # type: ignore[attr-defined]
    check_answered_and_billed(answers, rows, served.deployment, served.replica().id)
    assert elapsed < 60
