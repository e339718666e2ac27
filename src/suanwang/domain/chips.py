"""The chip catalogue: what each accelerator type is and how it is named.

Holds the :class:`ChipType` record, the :class:`Catalogue` lookup and chip selectors
(``"ascend-910b"``, ``"ascend"`` or ``"any"``). The catalogue's data lives in
``suanwang/data/chips.yaml`` and is parsed at the edge; nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from suanwang.domain.errors import ValidationError
from suanwang.domain.ids import ChipFamily, ChipName

ANY_CHIP = "any"
UNIT_TFLOPS = 125.0
"""One vendor-neutral compute unit: a V100-equivalent, 125 dense FP16 TFLOPS."""


@dataclass(frozen=True, slots=True)
class ChipType:
    """One accelerator type as sold: a card, or a ``cpu`` slot."""

    name: ChipName
    vendor: str
    family: ChipFamily
    memory_gb: int
    fp16_tflops: float
    bf16_tflops: float
    stack: str
    k8s_resource: str
    hami_resource: str
    figures_uncertain: bool = False
    sources: tuple[str, ...] = field(default_factory=tuple)

    @property
    def units(self) -> float:
        """Normalised compute units per card (0 for a ``cpu`` slot)."""
        return self.fp16_tflops / UNIT_TFLOPS

    @property
    def exact_units(self) -> Fraction:
        """:attr:`units` as an exact fraction of the figures as written (for money)."""
        return Fraction(str(self.fp16_tflops)) / Fraction(str(UNIT_TFLOPS))


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All known chip types, by name."""

    chips: Mapping[ChipName, ChipType]

    @classmethod
    def of(cls, chips: Iterable[ChipType]) -> Catalogue:
        """Build a catalogue; chip names must be unique."""
        by_name: dict[ChipName, ChipType] = {}
        for chip in chips:
            if chip.name in by_name:
                raise ValidationError(f"duplicate chip {chip.name!r} in catalogue", field="chips")
            by_name[chip.name] = chip
        return cls(by_name)

    def get(self, name: str, *, field_name: str = "chip") -> ChipType:
        """The chip called ``name``, or a ValidationError listing the known ones."""
        chip = self.chips.get(ChipName(name))
        if chip is None:
            raise ValidationError(
                f"unknown chip {name!r}",
                field=field_name,
                hint=f"known chips: {', '.join(sorted(self.chips))}",
            )
        return chip

    @property
    def families(self) -> frozenset[ChipFamily]:
        """Every chip family in the catalogue."""
        return frozenset(c.family for c in self.chips.values())

    def check_selector(self, selector: str, *, field_name: str = "resources.chip") -> str:
        """Validate a chip selector (a chip name, a family, or ``any``) and return it."""
        if selector == ANY_CHIP or selector in self.chips or selector in self.families:
            return selector
        raise ValidationError(
            f"unknown chip or chip family {selector!r}",
            field=field_name,
            hint=f"use 'any', a family ({', '.join(sorted(self.families))}) or a chip name",
        )


def selector_matches(selector: str, chip: ChipType) -> bool:
    """Whether a chip selector accepts ``chip``."""
    return selector in (ANY_CHIP, chip.name, chip.family)


MAX_ACCEPTED_CHIPS = 16
"""Most selectors one job may list as accepted chips."""


def accepted_selectors(selectors: Iterable[str]) -> tuple[str, ...]:
    """A job's accepted chips in canonical form: order kept, duplicates dropped, and
    ``("any",)`` when ``any`` is among them (it accepts everything the others do)."""
    found = tuple(dict.fromkeys(selectors))
    return (ANY_CHIP,) if ANY_CHIP in found else found


def accepts_chip(selectors: tuple[str, ...], chip: str, family: str) -> bool:
    """Whether a job accepting ``selectors`` (chip names, families or ``any``) may run on
    ``chip`` of ``family``."""
    if len(selectors) == 1:
        return selectors[0] in (ANY_CHIP, chip, family)
    return ANY_CHIP in selectors or chip in selectors or family in selectors


def selectors_label(selectors: tuple[str, ...]) -> str:
    """Accepted chips for people: ``any``, ``ascend`` or ``nvidia-v100|nvidia-p100``."""
    return "|".join(selectors)
