"""Launch commands and container images of inference engines on real GPU/NPU clusters.

Pure functions: :func:`render` turns (model, engine, chip family, cards, port) into the
command, environment and image a GPU/NPU node runs. Tensor parallelism spans the replica's
cards; the cards are made visible with the vendor's variable. Weights are expected at
``/models/<model name>`` on the node (staged there by the operator or a dataset job).

Images are pinned per engine and chip family in
:data:`~suanwang.domain.engine_images.IMAGES`; an operator overrides them
with their registry mirror. This module renders; it does not run anything.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from suanwang.domain.deployments import engine_runs_on
from suanwang.domain.endpoints import NODE_ADDRESS_ENV
from suanwang.domain.engine_images import IMAGES
from suanwang.domain.errors import ValidationError
from suanwang.domain.serving import ModelSpec

DEFAULT_PORT = 8000
MODELS_DIR = "/models"
ALL_INTERFACES = "0.0.0.0"
NODE_HOST = "<node address>"
"""Stands for the address of the node the engine runs on in a command given to
:func:`on_node` (which reads it from :data:`~suanwang.domain.endpoints.NODE_ADDRESS_ENV`)."""
NO_ADDRESS = "the backend gave this engine no node address"

DEVICE_ENV: dict[str, str] = {
    "nvidia": "CUDA_VISIBLE_DEVICES",
    "metax": "CUDA_VISIBLE_DEVICES",  # MACA's CUDA-compatible runtime (vendor vLLM images)
    "hygon-dcu": "HIP_VISIBLE_DEVICES",
    "ascend": "ASCEND_RT_VISIBLE_DEVICES",
}
"""The variable that selects a replica's cards, per chip family."""

MINDIE_DAEMON = "/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"


@dataclass(frozen=True, slots=True)
class Rendered:
    """One engine launch for a container runtime or a batch system."""

    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    port: int


def render(
    model: ModelSpec,
    engine: str,
    family: str,
    cards: int,
    port: int = DEFAULT_PORT,
    host: str = ALL_INTERFACES,
) -> Rendered:
    """The launch of ``model`` on ``cards`` cards of ``family`` with ``engine``, listening
    on ``host`` (:data:`NODE_HOST` for the node's address, see :func:`on_node`) and ``port``.
    MindIE and Infinity take no listen address here: they listen on every interface."""
    if not engine_runs_on(engine, family) or (engine, family) not in IMAGES:
        raise ValidationError(
            f"engine {engine!r} has no build for {family} chips",
            field="engine",
            hint="see the engine/chip table in docs/models.md",
        )
    if cards < 1:
        raise ValidationError("an engine needs at least one card", field="cards")
    devices = ",".join(str(i) for i in range(cards))
    env = [(DEVICE_ENV[family], devices)]
    path = f"{MODELS_DIR}/{model.name}"
    ctx = str(model.context_length)
    command: tuple[str, ...]
    if engine in ("vllm", "vllm-ascend"):
        command = (
            "vllm", "serve", path, "--served-model-name", model.name,
            "--host", host, "--port", str(port),
            "--tensor-parallel-size", str(cards), "--max-model-len", ctx,
        )  # fmt: skip
        if model.kind.value == "embedding":
            command += ("--task", "embed")
    elif engine == "sglang":
        command = (
            "python3", "-m", "sglang.launch_server", "--model-path", path,
            "--served-model-name", model.name, "--host", host, "--port", str(port),
            "--tp", str(cards), "--context-length", ctx,
        )  # fmt: skip
    elif engine == "lmdeploy":
        command = (
            "lmdeploy", "serve", "api_server", path, "--model-name", model.name,
            "--server-name", host, "--server-port", str(port),
            "--tp", str(cards), "--session-len", ctx,
        )  # fmt: skip
        if family == "ascend":
            command += ("--backend", "pytorch", "--device", "ascend")
    elif engine == "mindie":
        command = (MINDIE_DAEMON,)
        env += _mindie_env(model, cards, port)
    else:  # infinity
        command = (
            "infinity_emb", "v2", "--model-id", path, "--served-model-name", model.name,
            "--port", str(port),
        )  # fmt: skip
    return Rendered(IMAGES[(engine, family)], command, tuple(env), port)


def on_node(command: Sequence[str]) -> tuple[str, ...]:
    """``command`` run by ``/bin/sh`` with every :data:`NODE_HOST` argument replaced by the
    node's address, which the engine backend puts in the run's environment
    (:data:`~suanwang.domain.endpoints.NODE_ADDRESS_ENV`); without it the shell exits
    non-zero with :data:`NO_ADDRESS` and the engine never starts. Every other argument is
    quoted, so the script is exactly ``command`` (``exec``: the engine is the run's process).
    """
    address = f'"${{{NODE_ADDRESS_ENV}:?{NO_ADDRESS}}}"'
    words = [address if arg == NODE_HOST else shlex.quote(arg) for arg in command]
    return ("/bin/sh", "-c", "exec " + " ".join(words))


def _mindie_env(model: ModelSpec, cards: int, port: int) -> list[tuple[str, str]]:
    """MindIE reads ``config.json``; the image's entry script fills it from these."""
    return [
        ("MINDIE_MODEL_NAME", model.name),
        ("MINDIE_MODEL_WEIGHT_PATH", f"{MODELS_DIR}/{model.name}"),
        ("MINDIE_WORLD_SIZE", str(cards)),
        ("MINDIE_NPU_DEVICE_IDS", "[[" + ",".join(str(i) for i in range(cards)) + "]]"),
        ("MINDIE_PORT", str(port)),
        ("MINDIE_MAX_SEQ_LEN", str(model.context_length)),
    ]


def default_engine(model: ModelSpec, family: str) -> str | None:
    """The first of the model's engines that runs on ``family``."""
    return next((e for e in model.engines if engine_runs_on(e, family)), None)
