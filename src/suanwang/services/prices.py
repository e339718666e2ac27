"""Loads the price book: compute prices from ``data/prices.yaml``, token prices from the models."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from suanwang.domain.billing import PriceBook, card_hour_from_units
from suanwang.domain.chips import Catalogue
from suanwang.services.catalogue import default_catalogue
from suanwang.services.models import default_models


@cache
def default_prices() -> PriceBook:
    """The packaged price book (read once)."""
    text = resources.files("suanwang").joinpath("data/prices.yaml").read_text(encoding="utf-8")
    book = yaml.safe_load(text)
    return PriceBook(
        tokens={name: dict(spec.prices) for name, spec in default_models().items()},
        compute=compute_prices(book["compute"], book.get("per_unit_hour"), default_catalogue()),
        storage=_tiers("storage_gb_month", book["storage_gb_month"]),
    )


def compute_prices(
    entries: dict[str, Any], per_unit_hour: dict[str, Any] | None, catalogue: Catalogue
) -> dict[str, dict[str, int]]:
    """Card-hour prices by chip and tier: a chip's own line, else its normalised units ×
    the ``per_unit_hour`` price of each tier (chips with no units, like ``cpu``, need a line)."""
    compute = {str(chip): _tiers(str(chip), by_tier) for chip, by_tier in entries.items()}
    if per_unit_hour:
        per_unit = _tiers("per_unit_hour", per_unit_hour)
        for chip in catalogue.chips.values():
            if chip.name not in compute and chip.units > 0:
                compute[chip.name] = {
                    tier: card_hour_from_units(chip.exact_units, value)
                    for tier, value in per_unit.items()
                }
    return compute


def _tiers(what: str, by_tier: dict[str, Any]) -> dict[str, int]:
    prices = {str(tier): int(value) for tier, value in by_tier.items()}
    if "standard" not in prices or min(prices.values()) < 0:
        raise ValueError(f"prices.yaml: {what} needs a non-negative 'standard' price")
    return prices
