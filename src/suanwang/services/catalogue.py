"""Loads the chip catalogue shipped in ``suanwang/data/chips.yaml``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from suanwang.domain.chips import Catalogue, ChipType
from suanwang.domain.ids import ChipFamily, ChipName


@cache
def default_catalogue() -> Catalogue:
    """The packaged catalogue (read once; the file is part of the installed package)."""
    text = resources.files("suanwang").joinpath("data/chips.yaml").read_text(encoding="utf-8")
    return Catalogue.of(_chip(entry) for entry in yaml.safe_load(text)["chips"])


def _chip(entry: dict[str, Any]) -> ChipType:
    return ChipType(
        name=ChipName(entry["name"]),
        vendor=entry["vendor"],
        family=ChipFamily(entry["family"]),
        memory_gb=int(entry["memory_gb"]),
        fp16_tflops=float(entry["fp16_tflops"]),
        bf16_tflops=float(entry["bf16_tflops"]),
        stack=entry["stack"],
        k8s_resource=entry["k8s_resource"],
        hami_resource=entry["hami_resource"],
        figures_uncertain=bool(entry.get("uncertain", False)),
        sources=tuple(entry.get("sources", ())),
    )
