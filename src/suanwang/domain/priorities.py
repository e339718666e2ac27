"""Named priority classes, like Kubernetes PriorityClass and Kueue's WorkloadPriorityClass.

A job names a class (``priority_class: high``) instead of a bare number; the class gives
its ``priority`` and may make it non-preemptible (``preemptible: false``: such jobs are
never chosen as victims within their tenant's nominal quota; work on borrowed quota
stays reclaimable, see ``scheduler/preempt.py``). The operator defines the classes in a
YAML file; the packaged default (``suanwang/data/priority_classes.yaml``) has
``best-effort``, ``normal``, ``high`` and ``critical``. A job may still give a raw
``priority`` instead, but not both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import MAX_PRIORITY, JobSpec

MAX_NAME_LEN = 63


@dataclass(frozen=True, slots=True)
class PriorityClass:
    """A named priority: its value, and whether its jobs may be preempted."""

    name: str
    value: int
    preemptible: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True)
class PriorityClasses:
    """The operator's priority classes, by name."""

    by_name: Mapping[str, PriorityClass]

    @classmethod
    def of(cls, classes: Iterable[PriorityClass]) -> PriorityClasses:
        """Check names and values; a duplicate or out-of-range class is an error."""
        by_name: dict[str, PriorityClass] = {}
        for pc in classes:
            if not 0 < len(pc.name) <= MAX_NAME_LEN or pc.name in by_name:
                raise ValidationError(
                    f"priority class name {pc.name!r} is empty, too long or repeated",
                    field="priority_classes.name",
                )
            if not -MAX_PRIORITY <= pc.value <= MAX_PRIORITY:
                raise ValidationError(
                    f"priority class {pc.name!r} has value {pc.value}, out of range",
                    field="priority_classes.value",
                    hint=f"-{MAX_PRIORITY} to {MAX_PRIORITY}",
                )
            by_name[pc.name] = pc
        return cls(by_name)

    def ordered(self) -> list[PriorityClass]:
        """Classes from the highest value down."""
        return sorted(self.by_name.values(), key=lambda pc: (-pc.value, pc.name))

    def apply(self, spec: JobSpec) -> JobSpec:
        """The spec with its class's priority and preemptibility; errors for a bad class."""
        if spec.priority_class is None:
            return spec
        pc = self.by_name.get(spec.priority_class)
        if pc is None:
            raise ValidationError(
                f"unknown priority class {spec.priority_class!r}",
                field="priority_class",
                hint=f"known classes: {', '.join(p.name for p in self.ordered())}",
            )
        if spec.priority not in (0, pc.value):
            raise ValidationError(
                "give a priority class or a priority, not both",
                field="priority",
                hint=f"class {pc.name!r} has priority {pc.value}",
            )
        return replace(spec, priority=pc.value, preemptible=spec.preemptible and pc.preemptible)
