"""Fixtures shared by integration test modules.

``live_engines`` (session scope): real engines deployed through suanwang plus a gateway,
started once per test session by the first test that asks for it and stopped at the end
(see tests/integration/live_engines.py for what runs and the API). Skipped with the reason
where the engine packages or the model weights are not installed.

``slurm_cluster`` (session scope): a one-node Slurm cluster (tests/integration/slurm_cluster.py),
skipped with the reason where Slurm is not installed or the tests do not run as root.

``ray_cluster`` (session scope): a two-node Ray cluster as its own uid in a network namespace
with only ``lo`` (tests/integration/ray_cluster.py), skipped with the reason where ray, ``ip
netns`` or root is missing.

``kube`` (per test): a fake Kubernetes API server on 127.0.0.1 (tests/integration/kube_fake.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray_cluster as ray
import slurm_cluster as slurm
from kube_fake import FakeKube
from kube_fake_server import fake_kube
from live_engines import LiveEngines, missing_packages, running


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with fake_kube() as server:
        yield server


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


RAY_STARTED = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def ray_cluster(request: pytest.FixtureRequest) -> Iterator[ray.RayCluster]:
    why = ray.unavailable()
    if why is not None:
        request.config.stash[RAY_STARTED] = f"skipped: {why}"
        pytest.skip(why)
    with ray.running() as cluster:
        request.config.stash[RAY_STARTED] = (
            f"2 nodes up in {cluster.started_s:.1f} s (netns {cluster.netns})"
        )
        yield cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the session's Ray cluster took to start (or why it did not)."""
    said = terminalreporter.config.stash.get(RAY_STARTED, None)
    if said is not None:
        terminalreporter.write_line(f"ray_cluster: {said}")
