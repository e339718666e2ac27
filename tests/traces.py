"""Where the real job traces are: ``$SUANWANG_TRACES_DIR``, else ``../shared/traces`` next to
the checkout, else ``/work/shared/traces``. Tests that need them skip with the path printed
when none exists, and fail instead when ``SUANWANG_REQUIRE_TRACES=1`` (set by ``.ci/run``
when it found them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_CANDIDATES = (
    Path(os.environ.get("SUANWANG_TRACES_DIR", "/nonexistent")),
    Path(__file__).resolve().parents[2] / "shared" / "traces",
    Path("/work/shared/traces"),
)


def traces_dir() -> Path | None:
    """The first candidate that holds the Philly-derived trace."""
    for candidate in _CANDIDATES:
        if (candidate / "philly-gavel-seed0.csv").exists():
            return candidate
    return None


def require_traces() -> Path:
    """The traces directory, or skip (fail when SUANWANG_REQUIRE_TRACES=1)."""
    found = traces_dir()
    if found is None:
        reason = f"no Philly trace in any of {[str(c) for c in _CANDIDATES]}"
        if os.environ.get("SUANWANG_REQUIRE_TRACES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
