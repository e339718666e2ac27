"""Execution backends: implementations of :class:`suanwang.ports.Backend` (and clocks).

- :class:`LocalBackend` runs attempts as supervised OS processes on this host.
- :class:`SimulatedBackend` runs nothing: attempts finish on a clock, for simulated clusters.
"""

from suanwang.adapters.backends.clocks import SystemClock
from suanwang.adapters.backends.local import LocalBackend
from suanwang.adapters.backends.simulated import SimulatedBackend

__all__ = ["LocalBackend", "SimulatedBackend", "SystemClock"]
