"""Fixtures shared by integration test modules.

``live_engines`` (session scope): real engines deployed through suanwang plus a gateway,
started once per test session by the first test that asks for it and stopped at the end
(see tests/integration/live_engines.py for what runs and the API). Skipped with the reason
where the engine packages or the model weights are not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_engines import LiveEngines, missing_packages, running


@pytest.fixture(scope="session")
def live_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngines]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    with running(tmp_path_factory.mktemp("live-engines")) as live:
        yield live
