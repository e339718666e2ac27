"""The test tree itself: pytest imports test files by basename (rootdir-relative, no
packages), so two files of one name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_name() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert names["test_test_layout.py"] == 1
    assert [name for name, n in names.items() if n > 1] == []
