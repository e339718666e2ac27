"""Fixtures shared by integration test modules.

``live_engines`` (session scope): real engines deployed through suanwang plus a gateway,
started once per test session by the first test that asks for it and stopped at the end
(see tests/integration/live_engines.py for what runs and the API). Skipped with the reason
where the engine packages or the model weights are not installed.

``slurm_cluster`` (session scope): a one-node Slurm cluster (tests/integration/slurm_cluster.py),
skipped with the reason where Slurm is not installed or the tests do not run as root.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import slurm_cluster as slurm
from live_engines import LiveEngines, missing_packages, running


@pytest.fixture(scope="session")
def live_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngines]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    with running(tmp_path_factory.mktemp("live-engines")) as live:
        yield live


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[slurm.SlurmCluster]:
    why = slurm.unavailable()
    if why is not None:
        pytest.skip(why)
    with slurm.running() as cluster:
        yield cluster
