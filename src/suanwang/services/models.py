"""Loads the model catalogue shipped in ``suanwang/data/models.yaml``."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from suanwang.domain.serving import ModelKind, ModelSpec, TokenPrice


@cache
def default_models() -> dict[str, ModelSpec]:
    """The packaged model catalogue by model name (read once)."""
    text = resources.files("suanwang").joinpath("data/models.yaml").read_text(encoding="utf-8")
    return {spec.name: spec for spec in map(_model, yaml.safe_load(text)["models"])}


def _model(entry: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        name=entry["name"],
        family=entry["family"],
        params_b=float(entry["params_b"]),
        context_length=int(entry["context_length"]),
        kind=ModelKind(entry["kind"]),
        engines=tuple(entry["engines"]),
        chips=tuple(entry["chips"]),
        prices={tier: TokenPrice(**price) for tier, price in entry["prices"].items()},
        artifact=entry.get("artifact"),
        cards=int(entry.get("cards", 1)),
        description=entry.get("description", ""),
    )
