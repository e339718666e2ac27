"""The policy adapter, the simulator package's public surface and the CLI's choices."""

from __future__ import annotations

import pytest

import suanwang.simulator as sim
from suanwang.cli import sim as sim_cli
from suanwang.scheduler import cycle
from suanwang.simulator.chips import REFERENCE_CHIP
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.importers import FleetKind
from suanwang.simulator.policies import DEFAULT_POLICY, available_policies, resolve_policy


def test_default_policy_is_the_plain_cycle() -> None:
    assert DEFAULT_POLICY in available_policies()
    assert resolve_policy(DEFAULT_POLICY) is cycle


def test_fifo_is_always_available() -> None:
    assert "fifo" in available_policies()
    assert callable(resolve_policy("fifo"))


def test_unknown_policy_lists_the_known_ones() -> None:
    with pytest.raises(SimulationError, match="unknown policy 'lottery'") as caught:
        resolve_policy("lottery")
    assert "fifo" in (caught.value.hint or "")


def test_public_surface() -> None:
    assert set(sim.__all__) == {
        "CostModel",
        "InvariantViolation",
        "PolicyMetrics",
        "SimConfig",
        "SimFleet",
        "SimOutcome",
        "SimulationError",
        "TraceError",
        "TraceJob",
        "available_policies",
        "compute_metrics",
        "load_fleet",
        "load_trace",
        "resolve_policy",
        "simulate",
    }
    for name in sim.__all__:
        assert getattr(sim, name) is not None


def test_cli_choices_mirror_the_simulator() -> None:
    assert [c.value for c in sim_cli.Cost] == [c.value for c in sim.CostModel]
    assert [k.value for k in sim_cli.FleetKindChoice] == [k.value for k in FleetKind]
    assert sim_cli.REFERENCE_CHIP == REFERENCE_CHIP
