"""Loads the chip catalogue (``suanwang/data/chips.yaml``) and the priority classes
(``suanwang/data/priority_classes.yaml``, or the operator's own file)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from suanwang.domain.chips import Catalogue, ChipType
from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipFamily, ChipName
from suanwang.domain.priorities import PriorityClass, PriorityClasses


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


def load_priority_classes(path: Path | None = None) -> PriorityClasses:
    """The classes in ``path``, or the packaged ones; a bad file names itself and the field."""
    source = str(path) if path else "suanwang/data/priority_classes.yaml"
    if path is None:
        text = resources.files("suanwang").joinpath("data/priority_classes.yaml").read_text("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        entries = yaml.safe_load(text)["priority_classes"]
        return PriorityClasses.of(
            PriorityClass(
                name=str(e["name"]),
                value=int(e["value"]),
                preemptible=bool(e.get("preemptible", True)),
                description=str(e.get("description", "")),
            )
            for e in entries
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split())  # one line, even for YAML's multi-line marks
        raise ValidationError(
            f"{source}: not a list of priority classes ({type(exc).__name__}: {detail})",
            field="priority_classes",
            hint="each entry needs name and value (-1000..1000); preemptible is optional",
        ) from exc
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc.message}", field=exc.field, hint=exc.hint) from exc
