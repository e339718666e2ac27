"""Fixtures of the security suite: one real control plane per backend, one round of attacks.

The control plane is started once per backend and module (SQLite, then PostgreSQL), and
one round of attacks runs against it; each test then asserts on one part of the round.
The suite needs root (to give tenant jobs their own uids, and to see every process in
``/proc``); the PostgreSQL half needs the server of ``SUANWANG_TEST_POSTGRES`` and Redis on
127.0.0.1:6379 (``.ci/run`` starts both).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hostile_round import Round, play
from hostile_stack import Stack, start_stack, stop_stack

SUCCEEDED_ATTEMPTS = pytest.StashKey[dict[str, int]]()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A running control plane with gateway, tenants A and B, on one backend."""
    if os.geteuid() != 0:
        pytest.fail("the hostile-tenant suite runs as root (it gives jobs their own uids)")
    started = start_stack(request.param)
    try:
        yield started
    finally:
        stop_stack(started)


@pytest.fixture(scope="module")
def attack_round(stack: Stack, request: pytest.FixtureRequest) -> Round:
    """The round of attacks played once against ``stack``."""
    played = play(stack)
    counts = request.config.stash.setdefault(SUCCEEDED_ATTEMPTS, {})
    counts[stack.backend] = sum(
        v.outcome == "SUCCEEDED" for run in played.jobs.values() for v in run.verdicts()
    )
    return played


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """G12: hostile attempts that succeeded, per backend (goal: 0)."""
    counts = terminalreporter.config.stash.get(SUCCEEDED_ATTEMPTS, {})
    if counts:
        line = ", ".join(f"{backend} {n}" for backend, n in sorted(counts.items()))
        terminalreporter.write_line(f"R10 hostile-tenant attempts that succeeded (G12): {line}")
