"""Finds what this machine offers to the local cluster: cpu slots, and NVIDIA GPUs if
``nvidia-smi`` is present. A node holds one chip type, so GPUs become a second node.

Other vendors' tools (``npu-smi``, ``mx-smi``, ``hy-smi``, ``cnmon``) are not probed yet:
declare such nodes in a fleet file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Callable
from typing import Any

Runner = Callable[[list[str]], str]

NVIDIA_MODELS = (
    ("H100", "nvidia-h100"),
    ("H20", "nvidia-h20"),
    ("A100", "nvidia-a100"),
    ("L20", "nvidia-l20"),
    ("4090", "nvidia-rtx-4090"),
)


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


def nvidia_chips(output: str) -> Counter[str]:
    """Catalogue chip names counted from ``nvidia-smi --query-gpu=name`` output."""
    found: Counter[str] = Counter()
    for line in output.splitlines():
        for marker, chip in NVIDIA_MODELS:
            if marker in line.upper():
                found[chip] += 1
                break
    return found


def local_nodes(
    runner: Runner = _run,
    which: Callable[[str], str | None] = shutil.which,
    cpu_count: int | None = None,
) -> list[dict[str, Any]]:
    """This machine as fleet-file nodes."""
    host = (socket.gethostname().lower() or "localhost")[:50]
    nodes: list[dict[str, Any]] = [
        {"name": host, "chip": "cpu", "cards": cpu_count or os.cpu_count() or 1}
    ]
    if which("nvidia-smi"):
        try:
            chips = nvidia_chips(
                runner(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
            )
        except (OSError, subprocess.SubprocessError):
            chips = Counter()
        for chip, count in sorted(chips.items()):
            nodes.append({"name": f"{host}-{chip}", "chip": chip, "cards": count})
    return nodes
