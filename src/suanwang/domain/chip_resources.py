"""What each chip type of the catalogue is called by the engines suanwang runs work on.

- **Ray**: a custom resource named after the chip type (``{"Ascend910B": 8}``); the head
  and workers are started with ``--resources '{"Ascend910B": 8}'`` (``cpu`` is Ray's own
  ``CPU``).
- **Slurm**: a generic resource (GRES) requested as ``--gres=<gres>:<count>``; NVIDIA cards
  use the usual typed ``gpu:<model>``, the others a GRES of their own (``ascend910b``).
  ``cpu`` has none (CPUs are requested with ``--cpus-per-task``).
- **Kubernetes**: the vendor device plugin's extended resource (``huawei.com/Ascend910B``,
  ``nvidia.com/gpu``, ...), and HAMi's sharing resources (device, memory, cores) where HAMi
  supports the chip.

Every chip of the catalogue has a row (a unit test checks it); the reverse lookups serve
discovery (``fleet import``). Pure data: nothing here talks to an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipName


@dataclass(frozen=True, slots=True)
class HamiResources:
    """HAMi's names for sharing one card: the device count, its memory and its cores."""

    device: str
    memory: str = ""
    cores: str = ""


@dataclass(frozen=True, slots=True)
class ChipResources:
    """One chip type's names on Ray, Slurm and Kubernetes."""

    chip: ChipName
    ray: str
    slurm_gres: str
    """"" when the chip is no GRES (``cpu``)."""
    kube: str
    hami: HamiResources | None = None


def _nvidia(chip: str, ray: str, model: str) -> ChipResources:
    hami = HamiResources("nvidia.com/gpu", "nvidia.com/gpumem", "nvidia.com/gpucores")
    return ChipResources(ChipName(chip), ray, f"gpu:{model}", "nvidia.com/gpu", hami)


_CAMBRICON_HAMI = HamiResources(
    "cambricon.com/vmlu", "cambricon.com/mlu.smlu.vmemory", "cambricon.com/mlu.smlu.vcore"
)

CHIP_RESOURCES: tuple[ChipResources, ...] = (
    ChipResources(
        ChipName("ascend-910b"),
        "Ascend910B",
        "ascend910b",
        "huawei.com/Ascend910B",
        HamiResources(
            "huawei.com/Ascend910B3", "huawei.com/Ascend910B3-memory", "huawei.com/Ascend910B3-core"
        ),
    ),
    ChipResources(
        ChipName("ascend-310p"),
        "Ascend310P",
        "ascend310p",
        "huawei.com/Ascend310P",
        HamiResources("huawei.com/Ascend310P", "huawei.com/Ascend310P-memory"),
    ),
    ChipResources(
        ChipName("metax-c500"),
        "MetaXC500",
        "metaxc500",
        "metax-tech.com/gpu",
        HamiResources("metax-tech.com/sgpu", "metax-tech.com/vmemory", "metax-tech.com/vcore"),
    ),
    ChipResources(
        ChipName("hygon-k100"),
        "HygonK100",
        "dcuk100",
        "hygon.com/dcunum",
        HamiResources("hygon.com/dcunum", "hygon.com/dcumem", "hygon.com/dcucores"),
    ),
    ChipResources(
        ChipName("cambricon-mlu370"), "MLU370", "mlu370", "cambricon.com/mlu", _CAMBRICON_HAMI
    ),
    ChipResources(
        ChipName("cambricon-mlu590"), "MLU590", "mlu590", "cambricon.com/mlu", _CAMBRICON_HAMI
    ),
    ChipResources(ChipName("kunlunxin-p800"), "KunlunxinP800", "xpup800", "kunlunxin.com/xpu"),
    _nvidia("nvidia-a100", "A100", "a100"),
    _nvidia("nvidia-h100", "H100", "h100"),
    _nvidia("nvidia-h20", "H20", "h20"),
    _nvidia("nvidia-l20", "L20", "l20"),
    _nvidia("nvidia-rtx-4090", "RTX4090", "rtx4090"),
    ChipResources(ChipName("cpu"), "CPU", "", "cpu"),
)
_BY_CHIP = {r.chip: r for r in CHIP_RESOURCES}


def resources_of(chip: str) -> ChipResources:
    """Every engine name of ``chip``; ValidationError for a chip without a row."""
    found = _BY_CHIP.get(ChipName(chip))
    if found is None:
        raise ValidationError(
            f"chip {chip!r} has no engine resource names",
            field="chip",
            hint=f"known chips: {', '.join(sorted(_BY_CHIP))}",
        )
    return found


def ray_resource(chip: str) -> str:
    """The Ray resource that counts ``chip`` cards (``Ascend910B``; ``CPU`` for cpu)."""
    return resources_of(chip).ray


def slurm_gres(chip: str) -> str:
    """The Slurm GRES of ``chip`` without a count (``ascend910b``, ``gpu:h100``); "" for cpu."""
    return resources_of(chip).slurm_gres


def kube_resource(chip: str) -> str:
    """The Kubernetes extended resource of ``chip`` (``huawei.com/Ascend910B``; ``cpu``)."""
    return resources_of(chip).kube


def chip_for_ray_resource(name: str) -> ChipName | None:
    """The chip a Ray resource counts (None: not a chip resource, e.g. ``memory``)."""
    return next((r.chip for r in CHIP_RESOURCES if r.ray == name), None)


def chip_for_slurm_gres(gres: str) -> ChipName | None:
    """The chip of a GRES as ``sinfo``/``scontrol`` print it without the count: ``gpu:h100``,
    ``ascend910b`` (None for other GRES, or an untyped ``gpu`` that names no model)."""
    wanted = gres.strip().lower()
    return next((r.chip for r in CHIP_RESOURCES if r.slurm_gres and r.slurm_gres == wanted), None)


def chips_for_kube_resource(name: str) -> tuple[ChipName, ...]:
    """The chips a Kubernetes resource may count: one, or several (``nvidia.com/gpu`` is
    every NVIDIA model; a node label tells them apart)."""
    return tuple(r.chip for r in CHIP_RESOURCES if r.kube == name)
