"""Engine backends (Ray, Slurm, Kubernetes) built on first use, so the core imports none.

:class:`LazyBackend` stands in for a backend whose module (and client library, e.g.
``ray`` or ``kubernetes``) is imported only when a cluster first needs it. If the import
or construction fails, the backend is *unavailable*: :meth:`capacity` reports the cluster
unhealthy with the reason (so its jobs stay queued and the health view says why),
:meth:`refusal` refuses every workload with it, and the other verbs raise it.

Targets are ``"package.module:Name"``; ``Name(clock, settings)`` builds the backend.
:func:`engine_targets` lists those whose module exists in this installation.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Callable

import structlog

from suanwang.domain.connections import Connection
from suanwang.domain.workloads import Workload
from suanwang.ports import (
    Backend,
    ClusterCapacity,
    EngineUnreachable,
    Handle,
    LaunchRequest,
    RunRef,
    RunStatus,
)

ENGINE_TARGETS: dict[str, str] = {
    "ray": "suanwang.adapters.backends.ray:RayBackend",
    "slurm": "suanwang.adapters.backends.slurm:SlurmBackend",
    "kubernetes": "suanwang.adapters.backends.kube:KubernetesBackend",
}
"""Backend name -> factory target; a target's class is called as ``Name(clock, settings)``."""
log = structlog.get_logger("suanwang.backends")


def module_present(target: str) -> bool:
    """True if the module of ``target`` (``module:Name``) is installed (not imported)."""
    module = target.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def load_target(target: str) -> Callable[..., Backend]:
    """The object ``target`` names (``module:Name``), importing its module now."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"backend target {target!r} is not 'module:Name'")
    factory: Callable[..., Backend] = getattr(importlib.import_module(module_name), attr)
    return factory


class BackendUnavailable(EngineUnreachable):
    """The engine backend could not be imported or built (the message says why); like an
    unreachable engine, its attempts wait rather than fail."""


class LazyBackend:
    """A :class:`~suanwang.ports.Backend` built by ``build()`` on first use (thread-safe)."""

    def __init__(self, name: str, build: Callable[[], Backend]) -> None:
        self.name = name
        self._build = build
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._problem: str | None = None

    def _get(self) -> Backend:
        with self._lock:
            if self._backend is None and self._problem is None:
                try:
                    self._backend = self._build()
                except Exception as exc:  # ImportError of the client library, bad settings
                    self._problem = f"the {self.name} backend is unavailable: {exc}"
                    log.warning("engine backend unavailable", backend=self.name, exc_info=True)
            if self._backend is None:
                raise BackendUnavailable(self._problem)
            return self._backend

    def problem(self) -> str | None:
        """Why the backend cannot be built (None if it was, or could be)."""
        try:
            self._get()
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def submit(self, request: LaunchRequest) -> RunStatus:
        return self._get().submit(request)

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        return self._get().poll(job_id, attempt, handle)

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        self._get().cancel(job_id, attempt, handle)

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        return self._get().logs(job_id, attempt, handle, offset, limit)

    def refusal(self, workload: Workload) -> str | None:
        problem = self.problem()
        return problem if problem is not None else self._get().refusal(workload)

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:
        problem = self.problem()
        if problem is not None:
            return ClusterCapacity(healthy=False, reason=problem)
        return self._get().capacity(cluster, connection)

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        return self._get().runs(cluster, connection)
