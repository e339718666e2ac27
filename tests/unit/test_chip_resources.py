"""Every chip of the catalogue has its Ray resource, Slurm GRES and Kubernetes resource names
(the table the issue asks for), and the reverse lookups discovery uses find the chip back."""

from __future__ import annotations

import pytest

from suanwang.domain.chip_resources import (
    CHIP_RESOURCES,
    chip_for_ray_resource,
    chip_for_slurm_gres,
    chips_for_kube_resource,
    kube_resource,
    ray_resource,
    resources_of,
    slurm_gres,
)
from suanwang.domain.errors import ValidationError
from suanwang.services.catalogue import default_catalogue

CAT = default_catalogue()

# chip -> (Ray resource, Slurm GRES, Kubernetes device-plugin resource, HAMi memory resource)
EXPECTED = {
    "ascend-910b": (
        "Ascend910B",
        "ascend910b",
        "huawei.com/Ascend910B",
        "huawei.com/Ascend910B3-memory",
    ),
    "ascend-310p": (
        "Ascend310P",
        "ascend310p",
        "huawei.com/Ascend310P",
        "huawei.com/Ascend310P-memory",
    ),
    "metax-c500": ("MetaXC500", "metaxc500", "metax-tech.com/gpu", "metax-tech.com/vmemory"),
    "hygon-k100": ("HygonK100", "dcuk100", "hygon.com/dcunum", "hygon.com/dcumem"),
    "cambricon-mlu370": ("MLU370", "mlu370", "cambricon.com/mlu", "cambricon.com/mlu.smlu.vmemory"),
    "cambricon-mlu590": ("MLU590", "mlu590", "cambricon.com/mlu", "cambricon.com/mlu.smlu.vmemory"),
    "kunlunxin-p800": ("KunlunxinP800", "xpup800", "kunlunxin.com/xpu", None),
    "nvidia-a100": ("A100", "gpu:a100", "nvidia.com/gpu", "nvidia.com/gpumem"),
    "nvidia-h100": ("H100", "gpu:h100", "nvidia.com/gpu", "nvidia.com/gpumem"),
    "nvidia-h20": ("H20", "gpu:h20", "nvidia.com/gpu", "nvidia.com/gpumem"),
    "nvidia-l20": ("L20", "gpu:l20", "nvidia.com/gpu", "nvidia.com/gpumem"),
    "nvidia-rtx-4090": ("RTX4090", "gpu:rtx4090", "nvidia.com/gpu", "nvidia.com/gpumem"),
    "cpu": ("CPU", "", "cpu", None),
}


def test_the_table_covers_exactly_the_catalogue() -> None:
    assert set(EXPECTED) == set(CAT.chips)
    assert {r.chip for r in CHIP_RESOURCES} == set(CAT.chips)
    assert len(CHIP_RESOURCES) == len(CAT.chips)


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_names_of_each_chip(chip: str) -> None:
    ray, gres, kube, hami_memory = EXPECTED[chip]
    assert (ray_resource(chip), slurm_gres(chip), kube_resource(chip)) == (ray, gres, kube)
    hami = resources_of(chip).hami
    assert (hami.memory or None if hami else None) == hami_memory
    if hami is not None and chip.startswith("nvidia-"):
        assert hami.cores == "nvidia.com/gpucores"


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_reverse_lookups_find_the_chip(chip: str) -> None:
    assert chip_for_ray_resource(ray_resource(chip)) == chip
    if slurm_gres(chip):
        assert chip_for_slurm_gres(slurm_gres(chip)) == chip
        assert chip_for_slurm_gres(slurm_gres(chip).upper()) == chip
    assert chip in chips_for_kube_resource(kube_resource(chip))


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_kube_resource_is_from_the_catalogues_vendor_domain(chip: str) -> None:
    # the catalogue records each chip's device plugin; the domain (vendor) must agree
    catalogue_domain = CAT.get(chip).k8s_resource.partition("/")[0]
    assert kube_resource(chip).partition("/")[0] == catalogue_domain


def test_names_are_unique_where_discovery_needs_them() -> None:
    rays = [r.ray for r in CHIP_RESOURCES]
    gres = [r.slurm_gres for r in CHIP_RESOURCES if r.slurm_gres]
    assert len(set(rays)) == len(rays)
    assert len(set(gres)) == len(gres)
    assert set(chips_for_kube_resource("nvidia.com/gpu")) == {
        c for c in CAT.chips if c.startswith("nvidia-")
    }


def test_unknown_names() -> None:
    assert chip_for_ray_resource("memory") is None
    assert chip_for_ray_resource("GPU") is None
    assert chip_for_slurm_gres("gpu") is None  # untyped: names no model
    assert chip_for_slurm_gres("") is None
    assert chips_for_kube_resource("example.com/tpu") == ()
    with pytest.raises(ValidationError) as err:
        ray_resource("tpu-v5")
    assert err.value.field == "chip"
    assert "ascend-910b" in (err.value.hint or "")
