"""Loads the price book: compute prices from ``data/prices.yaml``, token prices from the models."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from suanwang.domain.billing import PriceBook
from suanwang.services.models import default_models


@cache
def default_prices() -> PriceBook:
    """The packaged price book (read once)."""
    text = resources.files("suanwang").joinpath("data/prices.yaml").read_text(encoding="utf-8")
    return PriceBook(
        tokens={name: dict(spec.prices) for name, spec in default_models().items()},
        compute=_compute(yaml.safe_load(text)["compute"]),
    )


def _compute(entries: dict[str, Any]) -> dict[str, dict[str, int]]:
    compute: dict[str, dict[str, int]] = {}
    for chip, by_tier in entries.items():
        prices = {str(tier): int(value) for tier, value in by_tier.items()}
        if "standard" not in prices or min(prices.values()) < 0:
            raise ValueError(f"prices.yaml: {chip} needs a non-negative 'standard' price")
        compute[str(chip)] = prices
    return compute
