"""The local probe: cpu slots always, NVIDIA GPUs when nvidia-smi answers."""

from __future__ import annotations

import subprocess

from suanwang.adapters.backends.probe import local_nodes, nvidia_chips


def test_cpu_only_machine() -> None:
    nodes = local_nodes(which=lambda _: None, cpu_count=4)
    assert len(nodes) == 1
    assert nodes[0]["chip"] == "cpu"
    assert nodes[0]["cards"] == 4


def test_nvidia_gpus_become_a_second_node() -> None:
    output = "NVIDIA H20\nNVIDIA H20\nNVIDIA A100-SXM4-80GB\nTesla T4\n"
    nodes = local_nodes(runner=lambda _: output, which=lambda _: "/usr/bin/nvidia-smi", cpu_count=2)
    assert [(n["chip"], n["cards"]) for n in nodes] == [
        ("cpu", 2),
        ("nvidia-a100", 1),
        ("nvidia-h20", 2),
    ]


def test_failing_nvidia_smi_is_ignored() -> None:
    def broken(argv: list[str]) -> str:
        raise subprocess.CalledProcessError(9, argv)

    assert len(local_nodes(runner=broken, which=lambda _: "/x", cpu_count=1)) == 1


def test_unknown_models_are_not_guessed() -> None:
    assert nvidia_chips("Tesla T4\nQuadro P1000\n") == {}
