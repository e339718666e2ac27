"""SimulatedBackend on a fake clock: no processes, runs end when the clock says so."""

from __future__ import annotations

import pytest

from suanwang.adapters.backends.simulated import SimulatedBackend
from suanwang.domain.jobs import AttemptState
from suanwang.ports import LaunchRequest, NodeSlice

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def request(duration: float | None = 3600.0) -> LaunchRequest:
    return LaunchRequest(
        job_id="job-x",
        attempt=1,
        tenant="t1",
        cluster="sim-1",
        command=(),
        placements=(NodeSlice("n1", 8),),
        simulate_duration_s=duration,
    )


def test_runs_until_the_duration_has_passed() -> None:
    clock = FakeClock()
    backend = SimulatedBackend(clock)
    started = backend.submit(request())
    assert started.state is AttemptState.RUNNING
    assert started.started_at == T0
    assert started.handle == {
        "started_at": T0,
        "duration_s": 3600.0,
        "speedup": 1.0,
        "simulated": True,
    }
    clock.advance(3599)
    assert backend.poll("job-x", 1, started.handle).state is AttemptState.RUNNING
    clock.advance(1)
    done = backend.poll("job-x", 1, started.handle)
    assert (done.state, done.exit_code) == (AttemptState.SUCCEEDED, 0)
    assert (done.started_at, done.ended_at) == (T0, T0 + 3600)
    clock.advance(10_000)
    assert backend.poll("job-x", 1, started.handle).ended_at == T0 + 3600


def test_speedup_shortens_runs() -> None:
    clock = FakeClock()
    backend = SimulatedBackend(clock, speedup=1000)
    handle = backend.submit(request()).handle
    clock.advance(3.5)
    assert backend.poll("job-x", 1, handle).state is AttemptState.RUNNING
    clock.advance(0.1)
    status = backend.poll("job-x", 1, handle)
    assert status.state is AttemptState.SUCCEEDED
    assert status.ended_at == pytest.approx(T0 + 3.6)


def test_speedup_is_kept_in_the_handle() -> None:
    clock = FakeClock()
    handle = SimulatedBackend(clock, speedup=1000).submit(request()).handle
    clock.advance(4)
    restarted = SimulatedBackend(clock, speedup=1)
    assert restarted.poll("job-x", 1, handle).state is AttemptState.SUCCEEDED


def test_cancel_is_a_stateless_no_op() -> None:
    clock = FakeClock()
    backend = SimulatedBackend(clock)
    handle = backend.submit(request()).handle
    backend.cancel("job-x", 1, handle)
    assert backend.poll("job-x", 1, handle).state is AttemptState.RUNNING


def test_logs_describe_the_run_and_slice() -> None:
    clock = FakeClock()
    backend = SimulatedBackend(clock, speedup=1000)
    handle = backend.submit(request()).handle
    text = backend.logs("job-x", 1, handle, 0, 10_000)
    assert text.startswith(b"[simulated] job-x attempt 1 started at 2027-01-15T08:00:00+00:00;")
    assert b"simulated duration 3600 s (speedup 1000x)" in text
    assert b"no process runs on a simulated cluster\n" in text
    assert b"finished" not in text
    assert backend.logs("job-x", 1, handle, 2, 9) == text[2:11]
    assert backend.logs("job-x", 1, handle, len(text), 100) == b""
    clock.advance(3600)
    later = backend.logs("job-x", 1, handle, 0, 10_000)
    assert later.startswith(text)
    assert later.endswith(b"finished at 2027-01-15T08:00:03+00:00\n")
    with pytest.raises(ValueError, match="offset"):
        backend.logs("job-x", 1, handle, -1, 10)


def test_missing_duration_is_rejected() -> None:
    backend = SimulatedBackend(FakeClock())
    with pytest.raises(ValueError, match="simulate_duration_s"):
        backend.submit(request(duration=None))
    with pytest.raises(ValueError, match="> 0"):
        backend.submit(request(duration=0))


def test_bad_speedup_is_rejected() -> None:
    with pytest.raises(ValueError, match="speedup"):
        SimulatedBackend(FakeClock(), speedup=0)


def test_empty_handle_is_lost() -> None:
    backend = SimulatedBackend(FakeClock())
    status = backend.poll("job-x", 1, {})
    assert status.state is AttemptState.LOST
    assert backend.logs("job-x", 1, {}, 0, 100) == b""


def test_a_retried_submit_returns_the_same_run() -> None:
    clock = FakeClock()
    backend = SimulatedBackend(clock)
    admitted = LaunchRequest(
        job_id="job-x",
        attempt=1,
        tenant="t1",
        cluster="sim-1",
        command=(),
        placements=(NodeSlice("n1", 8),),
        simulate_duration_s=60.0,
        admitted_at=T0,
    )
    first = backend.submit(admitted)
    clock.advance(45)  # the control plane crashed after dispatching and retries now
    again = backend.submit(admitted)
    assert again.handle == first.handle
    clock.advance(20)
    assert backend.poll("job-x", 1, again.handle).state is AttemptState.SUCCEEDED
