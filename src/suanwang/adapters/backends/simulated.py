"""Simulated backend: no process runs; an attempt "finishes" when the clock says so.

Stateless: everything a poll needs is in the handle returned by :meth:`SimulatedBackend.submit`
(start time, simulated duration, speedup), which the control plane stores. A run lasts
``duration_s / speedup`` seconds of the clock and always succeeds. Cancelling is left to the
control plane, which marks the attempt cancelled and stops polling it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suanwang.domain.connections import Connection
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.ports import Clock, ClusterCapacity, Handle, LaunchRequest, RunRef, RunStatus


class SimulatedBackend:
    """Finishes each attempt ``simulate_duration_s / speedup`` seconds after submission."""

    name = "simulated"

    def __init__(self, clock: Clock, speedup: float = 1.0) -> None:
        """Create a backend driven by ``clock``.

        Args:
            clock: Source of "now"; tests and the simulator pass a fake one.
            speedup: How many simulated seconds pass per clock second (> 0).
        """
        if not speedup > 0:
            raise ValueError("speedup must be > 0")
        self.clock = clock
        self.speedup = speedup

    def submit(self, request: LaunchRequest) -> RunStatus:
        """Start a simulated run; the request must carry ``simulate_duration_s``.

        Idempotent: the run starts at the attempt's admission time when the request carries
        it, so a dispatch retried after a control-plane crash gets the same run back.
        """
        duration = request.simulate_duration_s
        if duration is None:
            raise ValueError(
                f"job {request.job_id} has no simulate_duration_s; "
                "a simulated cluster only runs simulated jobs"
            )
        if not duration > 0:
            raise ValueError("simulate_duration_s must be > 0")
        now = self.clock.now() if request.admitted_at is None else request.admitted_at
        handle = {
            "started_at": now,
            "duration_s": float(duration),
            "speedup": self.speedup,
            "simulated": True,
        }
        return RunStatus(state=AttemptState.RUNNING, handle=handle, started_at=now)

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:  # noqa: ARG002 (Backend protocol)
        """RUNNING until the simulated duration has passed on the clock, then SUCCEEDED."""
        run = _Run.from_handle(handle, self.speedup)
        if run is None:
            return RunStatus(
                state=AttemptState.LOST,
                handle=handle,
                reason="no simulated run recorded in the handle",
            )
        if self.clock.now() < run.ends_at:
            return RunStatus(state=AttemptState.RUNNING, handle=handle, started_at=run.started_at)
        return RunStatus(
            state=AttemptState.SUCCEEDED,
            handle=handle,
            exit_code=0,
            reason="exited",
            started_at=run.started_at,
            ended_at=run.ends_at,
        )

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:  # noqa: ARG002 (Backend protocol)
        """Nothing to stop: the control plane records the cancellation itself."""
        return None

    def refusal(self, workload: Workload) -> str | None:  # noqa: ARG002 (Backend protocol)
        """Simulated runs run nothing, so every kind of workload is accepted."""
        return None

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:  # noqa: ARG002 (Backend protocol)
        """A simulated cluster is always healthy; its nodes are the fleet file's alone."""
        return ClusterCapacity(healthy=True, complete=False)

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:  # noqa: ARG002 (Backend protocol)
        """Stateless: every simulated run lives in the control plane's records only."""
        return []

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        """A few honest lines describing the simulated run, sliced by offset and limit."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        run = _Run.from_handle(handle, self.speedup)
        if run is None:
            return b""
        text = (
            f"[simulated] {job_id} attempt {attempt} started at {_iso(run.started_at)}; "
            f"simulated duration {run.duration_s:g} s (speedup {run.speedup:g}x); "
            "no process runs on a simulated cluster\n"
        )
        if self.clock.now() >= run.ends_at:
            text += f"[simulated] {job_id} attempt {attempt} finished at {_iso(run.ends_at)}\n"
        return text.encode()[offset : offset + limit]


@dataclass(frozen=True, slots=True)
class _Run:
    """The facts of one simulated run, read back from its handle."""

    started_at: float
    duration_s: float
    speedup: float

    @property
    def ends_at(self) -> float:
        return self.started_at + self.duration_s / self.speedup

    @classmethod
    def from_handle(cls, handle: Handle, default_speedup: float) -> _Run | None:
        """Parse ``handle``; None if it does not describe a simulated run."""
        started = _number(handle.get("started_at"))
        duration = _number(handle.get("duration_s"))
        speedup = _number(handle.get("speedup", default_speedup))
        if started is None or duration is None or speedup is None or speedup <= 0:
            return None
        return cls(started, duration, speedup)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
