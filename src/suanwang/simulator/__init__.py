"""The trace-driven simulator: replays job traces through the scheduler on a virtual clock.

Public surface: load a fleet (:func:`load_fleet`) and a trace (:func:`load_trace`), pick a
policy (:func:`resolve_policy`), :func:`simulate`, then :func:`compute_metrics` (which
checks the invariants). Reports, importers and what-if planning live in their modules
(``report``, ``page``, ``importers``, ``whatif``, ``runner``). Independent of the live
control plane: no database, no backends.
"""

from suanwang.simulator.engine import SimConfig, simulate
from suanwang.simulator.errors import InvariantViolation, SimulationError, TraceError
from suanwang.simulator.fleet import SimFleet, load_fleet
from suanwang.simulator.metrics import PolicyMetrics, compute_metrics
from suanwang.simulator.outcome import SimOutcome
from suanwang.simulator.policies import available_policies, resolve_policy
from suanwang.simulator.state import CostModel
from suanwang.simulator.trace import TraceJob, load_trace

__all__ = [
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
]
