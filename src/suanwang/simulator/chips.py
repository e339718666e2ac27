"""The simulator's chip table: the product catalogue plus chips that exist only in traces.

Research traces (Philly via Gavel) were measured on NVIDIA V100, P100 and K80 GPUs, which
the product catalogue (``suanwang/data/chips.yaml``) does not sell. They are added here, for
simulation only, so a simulated fleet may use them. Also here: the default relative speed
of each chip (FP16 TFLOPS relative to a reference chip) and its compute units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from suanwang.domain.chips import Catalogue, ChipType
from suanwang.domain.ids import ChipFamily, ChipName
from suanwang.services.catalogue import default_catalogue
from suanwang.simulator.errors import SimulationError

REFERENCE_CHIP = ChipName("nvidia-v100")
"""The chip trace durations are measured on unless a run says otherwise (Gavel's V100)."""

_SOURCES = ("NVIDIA datasheets; used for simulation of Gavel/Philly traces only",)

SIMULATION_CHIPS: tuple[ChipType, ...] = (
    ChipType(
        name=ChipName("nvidia-v100"),
        vendor="NVIDIA",
        family=ChipFamily("nvidia"),
        memory_gb=16,
        fp16_tflops=125.0,
        bf16_tflops=0.0,
        stack="CUDA",
        k8s_resource="nvidia.com/gpu",
        hami_resource="nvidia.com/gpu",
        sources=(*_SOURCES, "V100 SXM2 16 GB: 125 TFLOPS FP16 tensor"),
    ),
    ChipType(
        name=ChipName("nvidia-p100"),
        vendor="NVIDIA",
        family=ChipFamily("nvidia"),
        memory_gb=16,
        fp16_tflops=18.7,
        bf16_tflops=0.0,
        stack="CUDA",
        k8s_resource="nvidia.com/gpu",
        hami_resource="nvidia.com/gpu",
        sources=(*_SOURCES, "P100 PCIe 16 GB: 18.7 TFLOPS FP16 (no tensor cores)"),
    ),
    ChipType(
        name=ChipName("nvidia-k80"),
        vendor="NVIDIA",
        family=ChipFamily("nvidia"),
        memory_gb=12,
        fp16_tflops=4.37,
        bf16_tflops=0.0,
        stack="CUDA",
        k8s_resource="nvidia.com/gpu",
        hami_resource="nvidia.com/gpu",
        figures_uncertain=True,
        sources=(*_SOURCES, "K80: 8.73 TFLOPS FP32 per board of two GPUs, no fast FP16"),
    ),
)


def simulation_catalogue(base: Catalogue | None = None) -> Catalogue:
    """The product catalogue (or ``base``) plus :data:`SIMULATION_CHIPS`.

    A chip already in ``base`` keeps the base's figures.
    """
    base = base or default_catalogue()
    extra = [chip for chip in SIMULATION_CHIPS if chip.name not in base.chips]
    return Catalogue.of([*base.chips.values(), *extra])


def chip_speeds(
    catalogue: Catalogue, chips: Iterable[ChipName], reference: str = REFERENCE_CHIP
) -> dict[ChipName, float]:
    """Default relative speed of each chip: its FP16 TFLOPS over the reference chip's.

    Raises:
        SimulationError: the reference chip is unknown, or a chip has no FP16 figure (a
            job placed on it would never finish).
    """
    ref = catalogue.chips.get(ChipName(reference))
    if ref is None or ref.fp16_tflops <= 0:
        raise SimulationError(
            f"unknown reference chip {reference!r}",
            field="--reference-chip",
            hint=f"use a chip with FP16 figures, e.g. {REFERENCE_CHIP}",
        )
    speeds: dict[ChipName, float] = {}
    for name in sorted(set(chips)):
        chip = catalogue.get(name)
        if chip.fp16_tflops <= 0:
            raise SimulationError(
                f"chip {name!r} has no FP16 TFLOPS figure, so simulated jobs cannot run on it",
                field="fleet",
                hint="remove its nodes from the simulated fleet",
            )
        speeds[name] = chip.fp16_tflops / ref.fp16_tflops
    return speeds


def chip_units(speeds: Mapping[ChipName, float]) -> dict[ChipName, float]:
    """Compute units per card: one unit is one card of the reference chip."""
    return dict(speeds)
