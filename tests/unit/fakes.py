"""In-memory fakes of the ports, so services get unit tests without a database or processes.

:class:`FakeDatabase` holds every table as plain dicts of the domain records; calling it
opens a :class:`FakeUnitOfWork` (a ``UnitOfWorkFactory``) that works on a copy and writes it
back only on ``commit``, so an uncommitted unit of work changes nothing, as with the real
one. Its stores (:mod:`fake_stores`) implement the Protocols of :mod:`suanwang.ports` and
only persist. Every store write is logged in ``FakeDatabase.calls`` (committed or not), so
a test can tell that a service refused something before it called the store.

:class:`FakeBackend` runs nothing: a test says how each run ends. :class:`FakeClock` is
moved by hand.
"""

from __future__ import annotations

import itertools
from types import TracebackType
from typing import Self

from fake_datasets import FakeDatasets
from fake_serving import FakeAudit, FakeDemand, FakeDeployments, FakeLimits, FakeUsage
from fake_stores import FakeFleet, FakeJobs, FakeSessions, FakeTenancy, Tables

from suanwang.domain.connections import Connection
from suanwang.domain.fleet import ClusterKind, ClusterSpec, NodeSpec, RegionSpec
from suanwang.domain.ids import ChipName, ClusterName, RegionName
from suanwang.domain.jobs import AttemptState
from suanwang.domain.tenancy import QuotaSpec
from suanwang.domain.workloads import Workload
from suanwang.ports import ClusterCapacity, Handle, LaunchRequest, RunRef, RunStatus


class FakeDatabase:
    """The committed tables, and a log of every store write. Call it for a unit of work."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.calls: list[tuple[str, str]] = []
        """``(store method, record id)`` of every write, committed or not."""
        self.ids = itertools.count(1)

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def wrote(self, method: str) -> list[str]:
        """Ids of the records ``method`` was called for."""
        return [record for name, record in self.calls if name == method]


class FakeUnitOfWork:
    """One transaction over a copy of the tables; nothing is kept unless committed."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db
        self.t = db.tables.copy()
        log = (self.t, db.calls, db.ids)
        self.fleet = FakeFleet(*log)
        self.tenancy = FakeTenancy(*log)
        self.jobs = FakeJobs(*log)
        self.usage = FakeUsage(*log)
        self.deployments = FakeDeployments(*log)
        self.limits = FakeLimits(*log)
        self.audit = FakeAudit(*log)
        self.demand = FakeDemand(*log)
        self.datasets = FakeDatasets(*log)
        self.sessions = FakeSessions(*log)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def commit(self) -> None:
        self._db.tables = self.t.copy()

    def lock_scheduler(self) -> None:
        return None


class FakeClock:
    def __init__(self, at: float = 1_000.0) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


class FakeBackend:
    """Starts nothing: every run is alive until the test ends it with :meth:`end`."""

    name = "fake"

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self.submitted: list[LaunchRequest] = []
        self.cancelled: list[tuple[str, int]] = []
        self._ended: dict[tuple[str, int], RunStatus] = {}
        self.health = ClusterCapacity(healthy=True, complete=False)
        """What :meth:`capacity` answers (a test sets it per scenario)."""
        self.capacity_calls: list[tuple[str, Connection | None]] = []
        self.foreign: list[RunRef] = []
        """Runs the engine holds that no submit here started (orphans, for tests)."""

    def submit(self, request: LaunchRequest) -> RunStatus:
        self.submitted.append(request)
        return self.poll(request.job_id, request.attempt, {})

    def poll(self, job_id: str, attempt: int, handle: Handle) -> RunStatus:
        ended = self._ended.get((job_id, attempt))
        if ended is not None:
            return ended
        return RunStatus(AttemptState.RUNNING, {"run": f"{job_id}#{attempt}"}, started_at=0.0)

    def cancel(self, job_id: str, attempt: int, handle: Handle) -> None:
        self.cancelled.append((job_id, attempt))
        self.end(job_id, attempt, AttemptState.CANCELLED, reason="cancelled")

    def logs(self, job_id: str, attempt: int, handle: Handle, offset: int, limit: int) -> bytes:
        return b""

    def refusal(self, workload: Workload) -> str | None:
        return None

    def capacity(self, cluster: str, connection: Connection | None) -> ClusterCapacity:
        self.capacity_calls.append((cluster, connection))
        return self.health

    def runs(self, cluster: str, connection: Connection | None) -> list[RunRef]:
        """Every submitted run (alive until ended or cancelled) and the foreign ones."""
        mine = [
            RunRef(r.job_id, r.attempt, {}, (r.job_id, r.attempt) not in self._ended)
            for r in self.submitted
        ]
        foreign = [
            RunRef(
                r.job_id, r.attempt, r.handle, r.alive and (r.job_id, r.attempt) not in self._ended
            )
            for r in self.foreign
        ]
        return mine + foreign

    def end(
        self, job_id: str, attempt: int, state: AttemptState, exit_code: int | None = None,
        reason: str = "",
    ) -> None:  # fmt: skip
        """Make the run's next poll report that it ended in ``state``."""
        at = self._clock.now()
        self._ended[(job_id, attempt)] = RunStatus(
            state, {}, exit_code, reason, started_at=0.0, ended_at=at
        )


def seed(db: FakeDatabase, *, nodes: int = 2, cards: int = 8, quota: int = 16) -> None:
    """Region ``r1`` with one real cluster ``here`` (backend ``fake``) of ``nodes`` nodes of
    ``cards`` Ascend 910B cards, and tenant ``acme`` with ``quota`` ascend cards."""
    with db() as uow:
        uow.fleet.put_region(RegionSpec(RegionName("r1"), "Region One"), 0.0)
        specs = tuple(NodeSpec(f"n{i}", ChipName("ascend-910b"), cards) for i in range(nodes))
        cluster = ClusterSpec(
            ClusterName("here"), RegionName("r1"), ClusterKind.REAL, "fake", specs
        )
        uow.fleet.put_cluster(cluster, 0.0)
        uow.fleet.add_nodes("here", list(specs))
        uow.tenancy.add_tenant("acme", "Acme", 0.0)
        uow.tenancy.set_quota("acme", {"ascend": QuotaSpec(quota)})
        uow.commit()
    db.calls.clear()
