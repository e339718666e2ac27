"""Scheduling policies by name: the adapter between the simulator and the scheduler.

The scheduler package may offer several named policies: ``suanwang.scheduler.policy``
with ``POLICIES`` (names, or a mapping of name to policy object) and
``suanwang.scheduler.cycle(snapshot, policy)``. When it does not (yet), the only policy is
the plain ``cycle(snapshot)``, offered as ``fifo``. ``default`` is always that plain call.
``gavel-like`` (:mod:`.gavel`) is the simulator's own round-based baseline, not a
scheduler ``Policy``: resolving it makes a fresh policy object per run.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from suanwang.scheduler import Decision, Snapshot, cycle
from suanwang.scheduler.cache import CycleCache
from suanwang.scheduler.policy import Policy as SchedulerPolicy
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.gavel import NAME as GAVEL_LIKE
from suanwang.simulator.gavel import GavelLike

Policy = Callable[[Snapshot], list[Decision]]
"""A scheduling policy: one cycle from a snapshot to decisions. Those resolved here
(and ``cycle`` itself) also take a ``cache=`` keyword (:class:`CycleCache`), which the
engine passes to reuse work between cycles; a policy without it works too."""


def takes_cache(policy: Policy) -> bool:
    """Whether ``policy`` accepts a ``cache=`` keyword argument."""
    try:
        return "cache" in inspect.signature(policy).parameters
    except (TypeError, ValueError):  # builtins and C callables have no signature
        return False


DEFAULT_POLICY = "default"
"""Always available: ``cycle(snapshot)`` with no policy argument."""
_POLICY_MODULE = "suanwang.scheduler.policy"


def _policy_module() -> Any | None:
    """``suanwang.scheduler.policy`` if it exists and ``cycle`` takes a policy, else None."""
    try:
        module = importlib.import_module(_POLICY_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _POLICY_MODULE:
            raise
        return None
    takes_policy = len(inspect.signature(cycle).parameters) >= 2
    return module if takes_policy else None


def available_policies() -> tuple[str, ...]:
    """Names ``--policy`` accepts, sorted, ``default`` included."""
    module = _policy_module()
    names = {"fifo"} if module is None else set(module.POLICIES)
    return tuple(sorted(names | {DEFAULT_POLICY, GAVEL_LIKE}))


def resolve_policy(name: str) -> Policy:
    """The policy called ``name``.

    Raises:
        SimulationError: no policy has that name (the message lists the known ones).
    """
    if name not in available_policies():
        raise SimulationError(
            f"unknown policy {name!r}",
            field="--policy",
            hint=f"use one of: {', '.join(available_policies())}",
        )
    if name == GAVEL_LIKE:
        return GavelLike()  # a new one per run: it keeps the run's round accounting
    module = _policy_module()
    if module is None or name == DEFAULT_POLICY:
        return cycle
    registry = module.POLICIES
    chosen = registry[name] if isinstance(registry, Mapping) else name
    # ``cycle`` takes the policy as a second argument once the policy module exists.
    scheduler_cycle: Any = cycle

    def run(snapshot: Snapshot, cache: CycleCache | None = None) -> list[Decision]:
        decisions: list[Decision] = scheduler_cycle(snapshot, chosen, cache=cache)
        return decisions

    run.__name__ = f"cycle_{name}"
    setattr(run, SCHEDULER_POLICY, chosen)
    return run


SCHEDULER_POLICY = "scheduler_policy"
"""The attribute of a resolved policy that holds the scheduler's ``Policy`` object
(what :func:`scheduler_policy` reads, e.g. for reallocation)."""


def scheduler_policy(policy: Policy) -> SchedulerPolicy | None:
    """The scheduler ``Policy`` behind a resolved policy, or None (``default``, or a
    callable of the caller's own)."""
    found = getattr(policy, SCHEDULER_POLICY, None)
    return found if isinstance(found, SchedulerPolicy) else None
