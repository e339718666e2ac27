"""Named priority classes: how a class sets a job's priority and preemptibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobSpec
from suanwang.domain.priorities import PriorityClass, PriorityClasses
from suanwang.services.catalogue import load_priority_classes

CLASSES = load_priority_classes()


def spec(**kw: object) -> JobSpec:
    return JobSpec(name="j", command=("true",), **kw)  # type: ignore[arg-type]


APPLY = [
    # (spec fields, expected priority, expected preemptible)
    pytest.param({}, 0, True, id="no-class-keeps-the-raw-priority"),
    pytest.param({"priority": 7}, 7, True, id="raw-priority-alone"),
    pytest.param({"priority_class": "high"}, 100, True, id="class-sets-priority"),
    pytest.param({"priority_class": "best-effort"}, -100, True, id="negative-class"),
    pytest.param({"priority_class": "critical"}, 1000, False, id="critical-is-never-preempted"),
    pytest.param(
        {"priority_class": "high", "preemptible": False}, 100, False, id="job-may-opt-out"
    ),
    pytest.param({"priority_class": "high", "priority": 100}, 100, True, id="same-value-is-ok"),
]


@pytest.mark.parametrize(("fields", "priority", "preemptible"), APPLY)
def test_apply(fields: dict[str, object], priority: int, preemptible: bool) -> None:
    applied = CLASSES.apply(spec(**fields))
    assert (applied.priority, applied.preemptible) == (priority, preemptible)


ERRORS = [
    pytest.param({"priority_class": "urgent"}, "priority_class", "known classes", id="unknown"),
    pytest.param(
        {"priority_class": "high", "priority": 5}, "priority", "not both", id="class-and-priority"
    ),
]


@pytest.mark.parametrize(("fields", "field", "fragment"), ERRORS)
def test_apply_errors(fields: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        CLASSES.apply(spec(**fields))
    assert err.value.field == field
    assert fragment in err.value.one_line()


def test_packaged_classes_are_ordered_highest_first() -> None:
    names = [pc.name for pc in CLASSES.ordered()]
    assert names == ["critical", "high", "normal", "best-effort"]


@pytest.mark.parametrize(
    ("classes", "field"),
    [
        ([PriorityClass("a", 1), PriorityClass("a", 2)], "priority_classes.name"),
        ([PriorityClass("", 1)], "priority_classes.name"),
        ([PriorityClass("a", 5000)], "priority_classes.value"),
    ],
    ids=["duplicate", "empty-name", "out-of-range"],
)
def test_bad_class_sets(classes: list[PriorityClass], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        PriorityClasses.of(classes)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("priority_classes:\n  - {name: a}\n", "KeyError"),
        ("priority_classes:\n  - {name: a, value: lots}\n", "ValueError"),
        ("priority_classes: [\n", "line 2"),
        ("priority_classes:\n  - {name: a, value: 9999}\n", "out of range"),
    ],
    ids=["missing-value", "value-not-a-number", "malformed", "out-of-range"],
)
def test_a_bad_file_names_itself(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError) as err:
        load_priority_classes(path)
    assert str(path) in err.value.message
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_an_operator_file_replaces_the_packaged_classes(tmp_path: Path) -> None:
    path = tmp_path / "classes.yaml"
    path.write_text("priority_classes:\n  - {name: gold, value: 500, preemptible: false}\n")
    classes = load_priority_classes(path)
    assert [pc.name for pc in classes.ordered()] == ["gold"]
    assert not classes.apply(spec(priority_class="gold")).preemptible
